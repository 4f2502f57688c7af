package main

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Resource figures come from Linux's /proc; elsewhere they are left out.

// userHZ is the unit of the CPU times in /proc (USER_HZ, 100 on every
// Linux architecture that Go supports).
const userHZ = 100

// usage is what the machine spent during one measurement.
type usage struct {
	Wall time.Duration `json:"wallNs"`
	// Server figures need -pid.
	ServerPeakRSSKiB int64         `json:"serverPeakRssKiB,omitempty"`
	ServerCPU        time.Duration `json:"serverCpuNs,omitempty"`
	ServerCPUPerReq  time.Duration `json:"serverCpuPerRequestNs,omitempty"`
	// Peer figures need -peer-pids: the other instances' CPU time, which
	// the measured traffic costs them (invalidations, acknowledgements).
	PeersCPU       time.Duration `json:"peersCpuNs,omitempty"`
	PeersCPUPerReq time.Duration `json:"peersCpuPerRequestNs,omitempty"`
	// LoadtestCPU is this process's own CPU time; MachineBusy the CPU time of
	// every process on the machine (PostgreSQL included), MachineCPUs the
	// number of CPUs it is spread over.
	LoadtestCPU time.Duration `json:"loadtestCpuNs"`
	// PostgresCPU is the CPU time of the PostgreSQL backends serving the
	// database of -database-url (PostgreSQL on this machine only).
	PostgresCPU       time.Duration `json:"postgresCpuNs,omitempty"`
	PostgresCPUPerReq time.Duration `json:"postgresCpuPerRequestNs,omitempty"`
	MachineBusy       time.Duration `json:"machineBusyNs"`
	// MachineIRQ is the part of MachineBusy spent in interrupts and softirqs,
	// which no process is charged for: on loopback, much of TCP.
	MachineIRQ       time.Duration `json:"machineIrqNs"`
	MachineCPUs      int           `json:"machineCpus"`
	MachineCPUPerReq time.Duration `json:"machineCpuPerRequestNs,omitempty"`
}

func (u *usage) perRequest(n int) {
	if n == 0 {
		return
	}
	u.ServerCPUPerReq = u.ServerCPU / time.Duration(n)
	u.PeersCPUPerReq = u.PeersCPU / time.Duration(n)
	u.PostgresCPUPerReq = u.PostgresCPU / time.Duration(n)
	u.MachineCPUPerReq = u.MachineBusy / time.Duration(n)
}

// procSampler watches the server's resident set while a measurement runs and
// takes CPU snapshots at its start and stop.
type procSampler struct {
	pid     int
	dbName  string
	peerPID []int
	peers   uint64         // CPU ticks of the other instances at start
	backend map[int]uint64 // CPU ticks of the database's backends at start
	started time.Time
	server  uint64 // CPU ticks of the server at start
	self    uint64
	machine cpuTimes
	ok      bool

	mu      sync.Mutex
	peakRSS int64
	done    chan struct{}
	wg      sync.WaitGroup
}

func startSampler(p procs) *procSampler {
	pid, dbName := p.pid, p.dbName
	s := &procSampler{pid: pid, dbName: dbName, peerPID: p.peers, started: time.Now(), done: make(chan struct{})}
	var err error
	if s.machine, err = readMachineCPU(); err != nil {
		return s // no /proc: no figures
	}
	s.self, _ = readProcCPU("self")
	if dbName != "" {
		s.backend = backendTicks(dbName)
	}
	s.ok = true
	s.peers = sumProcCPU(s.peerPID)
	if pid > 0 {
		s.server, _ = readProcCPU(strconv.Itoa(pid))
		s.wg.Add(1)
		go s.watchRSS()
	}
	return s
}

func (s *procSampler) watchRSS() {
	defer s.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if kib, err := readVmRSS(s.pid); err == nil {
			s.mu.Lock()
			s.peakRSS = max(s.peakRSS, kib)
			s.mu.Unlock()
		}
		select {
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

// stop ends the sampling and returns the figures, or nil without /proc.
func (s *procSampler) stop() *usage {
	if !s.ok {
		return nil
	}
	close(s.done)
	s.wg.Wait()
	u := &usage{Wall: time.Since(s.started)}
	m, _ := readMachineCPU()
	u.MachineBusy = ticks(m.busy - s.machine.busy)
	u.MachineIRQ = ticks(m.irq - s.machine.irq)
	u.MachineCPUs = m.cpus
	if self, err := readProcCPU("self"); err == nil {
		u.LoadtestCPU = ticks(self - s.self)
	}
	if s.dbName != "" {
		var sum uint64
		for pid, t := range backendTicks(s.dbName) {
			sum += t - min(t, s.backend[pid]) // a backend born meanwhile counts whole
		}
		u.PostgresCPU = ticks(sum)
	}
	if len(s.peerPID) > 0 {
		u.PeersCPU = ticks(sumProcCPU(s.peerPID) - s.peers)
	}
	if s.pid > 0 {
		if server, err := readProcCPU(strconv.Itoa(s.pid)); err == nil {
			u.ServerCPU = ticks(server - s.server)
		}
		u.ServerPeakRSSKiB = s.peakRSS
	}
	return u
}

func ticks(n uint64) time.Duration { return time.Duration(n) * time.Second / userHZ }

func readVmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

// parseVmRSS reads the VmRSS line ("VmRSS:	  123456 kB") of a
// /proc/<pid>/status file, in KiB.
func parseVmRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			break
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("no VmRSS line")
}

// sumProcCPU is the CPU ticks of pids together; one that cannot be read
// counts nothing.
func sumProcCPU(pids []int) uint64 {
	var sum uint64
	for _, pid := range pids {
		t, _ := readProcCPU(strconv.Itoa(pid))
		sum += t
	}
	return sum
}

func readProcCPU(pid string) (uint64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	return parseProcCPU(b)
}

// parseProcCPU returns utime + stime, in ticks, of a /proc/<pid>/stat line.
// The command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseProcCPU(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed stat")
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed stat")
	}
	return utime + stime, nil
}

// cpuTimes are the machine's CPU ticks summed over all CPUs.
type cpuTimes struct {
	busy uint64 // everything but idle and iowait
	irq  uint64 // irq and softirq, part of busy
	cpus int
}

func readMachineCPU() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseMachineCPU(b)
}

// parseMachineCPU reads the machine's CPU ticks from /proc/stat.
func parseMachineCPU(stat []byte) (cpuTimes, error) {
	var t cpuTimes
	found := false
	for line := range bytes.Lines(stat) {
		f := strings.Fields(string(line))
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			t.cpus++
			continue
		}
		if len(f) < 9 {
			return cpuTimes{}, fmt.Errorf("malformed /proc/stat")
		}
		for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("malformed /proc/stat")
			}
			if i != 3 && i != 4 {
				t.busy += n
			}
			if i == 5 || i == 6 {
				t.irq += n
			}
		}
		found = true
	}
	if !found {
		return cpuTimes{}, fmt.Errorf("no cpu line in /proc/stat")
	}
	return t, nil
}

// backendTicks returns the CPU ticks of every PostgreSQL backend on this
// machine that serves dbName, by pid. Backends announce themselves in their
// command line: "postgres: 15/main: <user> <database> <client> <state>".
func backendTicks(dbName string) map[int]uint64 {
	out := map[int]uint64{}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err != nil || !isBackendOf(cmdline, dbName) {
			continue
		}
		if t, err := readProcCPU(d.Name()); err == nil {
			out[pid] = t
		}
	}
	return out
}

// isBackendOf reports whether a /proc/<pid>/cmdline is that of a PostgreSQL
// backend connected to dbName.
func isBackendOf(cmdline []byte, dbName string) bool {
	title := strings.TrimRight(string(cmdline), "\x00")
	if !strings.HasPrefix(title, "postgres: ") {
		return false
	}
	return slices.Contains(strings.Fields(title), dbName)
}

// loadAvg returns the first three fields of /proc/loadavg, "" without it:
// the report shows how busy the machine was with other work.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
