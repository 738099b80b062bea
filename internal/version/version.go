// Package version holds the version string of this build of dsh, set by the Makefile from
// git with -ldflags. It holds nothing else.
package version

// Version is the dsh version; "dev" when built without the Makefile.
var Version = "dev"
