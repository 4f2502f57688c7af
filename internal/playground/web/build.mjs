// Rebuilds ../assets/vendor from the exact packages in package-lock.json:
//
//   npm ci && npm run build            (writes ../assets/vendor)
//   node build.mjs /some/other/dir     (writes there instead; the Go test
//                                       TestVendorIsReproducible uses this)
//
// The prebuilt UMD files that graphiql and react ship are copied as they are,
// except for two changes that keep the page within a Content-Security-Policy
// of 'self' alone:
//   - graphiql.min.css embeds its fonts and images as data: URIs; each is
//     written to a file named after its content hash, and the stylesheet
//     points to that file instead;
//   - the sourceMappingURL comment of graphiql.min.js names a map that is not
//     served, so it is dropped (a browser with DevTools open would ask for it).
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ?? join(here, '..', 'assets', 'vendor');
const pkg = (p) => join(here, 'node_modules', p);

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

copyFileSync(pkg('react/umd/react.production.min.js'), join(out, 'react.production.min.js'));
copyFileSync(pkg('react-dom/umd/react-dom.production.min.js'), join(out, 'react-dom.production.min.js'));

const js = readFileSync(pkg('graphiql/graphiql.min.js'), 'utf8');
writeFileSync(join(out, 'graphiql.min.js'), js.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n'));

const extensions = { 'font/woff': 'woff', 'font/woff2': 'woff2', 'image/png': 'png', 'image/gif': 'gif', 'image/svg+xml': 'svg' };
let css = readFileSync(pkg('graphiql/graphiql.min.css'), 'utf8');
css = css.replace(/url\((["']?)data:([a-z0-9+./-]+);base64,([A-Za-z0-9+/=]+)\1\)/g, (_, _q, type, data) => {
  const ext = extensions[type];
  if (!ext) throw new Error(`graphiql.min.css embeds a data: URI of type ${type}; add its extension to build.mjs`);
  const bytes = Buffer.from(data, 'base64');
  const name = `graphiql-${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}.${ext}`;
  writeFileSync(join(out, name), bytes);
  return `url(${name})`;
});
if (css.includes('data:')) throw new Error('graphiql.min.css still holds a data: URI that build.mjs does not extract');
writeFileSync(join(out, 'graphiql.min.css'), css);

// Licences travel with the code they cover.
const licences = ['graphiql', 'react', 'react-dom']
  .map((p) => `# ${p} ${JSON.parse(readFileSync(pkg(`${p}/package.json`), 'utf8')).version}\n\n${readFileSync(pkg(`${p}/LICENSE`), 'utf8').trim()}\n`)
  .join('\n');
writeFileSync(join(out, 'LICENSES.md'), licences);
