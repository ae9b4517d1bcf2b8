// Package proccpu reads the CPU time of processes, for the benchmarks that
// report what a write costs this process and the server's backends:
// [Self] (getrusage, Unix) and [Of] (another process on this machine,
// from Linux's /proc/<pid>/schedstat). Elsewhere they report that they
// cannot tell, and the benchmarks leave those figures out.
package proccpu
