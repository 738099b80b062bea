package fs

import (
	"context"
	"errors"
	"log/slog"
	"syscall"

	"dsh/content"
	"dsh/meta"
)

// errno is the one place where errors become errno values. Anything unexpected is logged
// (without paths or names, which may be identifiable) and answered with EIO.
func errno(log *slog.Logger, op string, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, meta.ErrNoSpace):
		return syscall.ENOSPC
	case errors.Is(err, meta.ErrTooBig):
		return syscall.EFBIG
	case errors.Is(err, meta.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, meta.ErrExists):
		return syscall.EEXIST
	case errors.Is(err, meta.ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, meta.ErrIsDir):
		return syscall.EISDIR
	case errors.Is(err, meta.ErrNotEmpty):
		return syscall.ENOTEMPTY
	case errors.Is(err, meta.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, meta.ErrNoAttr):
		return syscall.ENODATA
	case errors.Is(err, meta.ErrNameTooLong):
		return syscall.ENAMETOOLONG
	case errors.Is(err, meta.ErrCrossShare):
		return syscall.EXDEV
	case errors.Is(err, content.ErrLocked):
		// The file's key was dropped because its opener lost access at that moment.
		return syscall.EACCES
	case errors.Is(err, content.ErrTooLarge):
		return syscall.EFBIG
	case errors.Is(err, content.ErrInvalidRange):
		return syscall.EINVAL
	case errors.Is(err, content.ErrIntegrity):
		return syscall.EIO
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return syscall.EINTR
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	log.Error("group tree: operation failed", "op", op, "err", err)
	return syscall.EIO
}
