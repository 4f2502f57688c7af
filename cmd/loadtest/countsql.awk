# Counts the statements PostgreSQL logged (log_statement = 'all') for one
# loadtest run, by scenario and kind, between the -sql-markers markers.
# usage: awk -v db=<database> -v run=<run id> -f countsql.awk <postgresql log>
index($0, "@" db " ") && /LOG:  (statement|execute [^:]*):/ {
    if (match($0, "loadtest-marker " run " [a-f] (begin|end)")) {
        split(substr($0, RSTART, RLENGTH), m, " ")
        cur = (m[4] == "begin") ? m[3] : ""
        next
    }
    if (cur == "") next
    s = $0
    sub(/.*LOG:  (statement|execute [^:]*): /, "", s)
    kind = toupper(s)
    sub(/[ (].*/, "", kind)
    if (s ~ /pg_notify/) kind = kind "+NOTIFY"
    if (s ~ /^-- ping/) kind = "PING"
    total[cur]++
    byKind[cur " " kind]++
}
END {
    for (k in byKind) print k, byKind[k]
    for (c in total) print c, "TOTAL", total[c]
}
