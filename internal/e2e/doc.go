// Package e2e holds the end-to-end tests of the pipeline; it has no code.
package e2e
