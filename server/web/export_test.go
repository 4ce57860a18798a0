package web

// SetMaxReportHosts sets the most hosts of a printable report until the
// returned function restores it.
func SetMaxReportHosts(n int) (restore func()) {
	old := maxReportHosts
	maxReportHosts = n
	return func() { maxReportHosts = old }
}
