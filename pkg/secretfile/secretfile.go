// Package secretfile reads files that contain secrets: passwords, bearer
// tokens and private keys. Like ssh with a private key, it rejects a file
// that its group or other users may read or write, so a secret left
// readable by everyone fails at start instead of being used silently.
//
// The check looks at permission bits only. It does not check the file's
// owner, and on Windows, where Go reports synthetic permission bits, it
// accepts every file.
package secretfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
)

// forbiddenBits are the permission bits a secret file must not have:
// every permission for its group and for other users.
const forbiddenBits fs.FileMode = 0o077

// ModeError is returned when group or others may read or write a secret
// file. Its message names the path, the mode and the chmod that fixes it.
type ModeError struct {
	Path string
	Mode fs.FileMode
}

func (e *ModeError) Error() string {
	return fmt.Sprintf("%q has mode %04o, so its group or other users may "+
		"read or write the secret; run chmod 600 %s",
		e.Path, uint32(e.Mode.Perm()), shellQuote(e.Path))
}

// CheckMode returns a *ModeError when the file at path, after following
// symbolic links, grants any permission to its group or to other users.
// It returns the error of os.Stat when the file cannot be examined.
func CheckMode(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return checkInfo(path, st)
}

// Read returns the content of the secret file at path. It checks the mode
// of the opened file, as CheckMode does, before reading it.
func Read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	// Stat the open file so that the file checked is the file read.
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkInfo(path, st); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

func checkInfo(path string, st fs.FileInfo) error {
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file; give the path of the "+
			"file that contains the secret", shellQuote(path))
	}
	if runtime.GOOS == "windows" {
		return nil
	}
	if st.Mode().Perm()&forbiddenBits != 0 {
		return &ModeError{Path: path, Mode: st.Mode()}
	}
	return nil
}

// shellQuote returns path quoted for a POSIX shell when it contains
// anything but letters, digits and the characters common in file names.
func shellQuote(path string) string {
	safe := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' ||
			r >= '0' && r <= '9' || strings.ContainsRune("/._-+:@%,=", r)
	}
	if path != "" && strings.IndexFunc(path, func(r rune) bool { return !safe(r) }) < 0 {
		return path
	}
	return "'" + strings.ReplaceAll(path, "'", `'\''`) + "'"
}
