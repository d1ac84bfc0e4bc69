// Package version holds the build's version, set by the Makefile through
// -ldflags.
package version

// Version is the release or git description of this build; "dev" for a
// plain go build.
var Version = "dev"
