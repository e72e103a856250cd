// Package chaos holds the fault-injection test of Moat's roles; it has no
// code.
package chaos
