// The file system: go-fuse's loopback (a mirror of the backing directory) with
// file data routed through the page cache (cache.go).
//
// What passes through at once: every metadata operation (create, mkdir, rename,
// unlink, link, chmod, chown, utimes) and directory fsync. What waits for an fsync:
// file data and file size (write, truncate, O_TRUNC). LazyFS by default also keeps
// metadata; the difference only shows for a file created or renamed without an
// fsync of its directory, which a crash here keeps.
package main

import (
	"context"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// node is a loopback node whose files go through the page cache.
type node struct {
	*fs.LoopbackNode
	cache *pageCache
}

var (
	_ fs.NodeWrapChilder = (*node)(nil)
	_ fs.NodeLookuper    = (*node)(nil)
	_ fs.NodeOpener      = (*node)(nil)
	_ fs.NodeCreater     = (*node)(nil)
	_ fs.NodeGetattrer   = (*node)(nil)
	_ fs.NodeSetattrer   = (*node)(nil)
	_ fs.NodeUnlinker    = (*node)(nil)
	_ fs.NodeRenamer     = (*node)(nil)
)

// newRoot mirrors the directory `backing`.
func newRoot(backing string, cache *pageCache) (*node, error) {
	root, err := fs.NewLoopbackRoot(backing)
	if err != nil {
		return nil, err
	}
	return &node{LoopbackNode: root.(*fs.LoopbackNode), cache: cache}, nil
}

// WrapChild makes every node of the tree a faultfs node.
func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), cache: n.cache}
}

func (n *node) ino() uint64 { return n.StableAttr().Ino }

func (n *node) backingPath() string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()))
}

// openFlags adapts the caller's open flags for the backing file: the kernel
// computes append offsets itself, O_TRUNC goes through the cache, and a write-only
// open is widened to read-write when allowed (a partial page write must read the
// rest of the page).
func openFlags(flags uint32) (backing uint32, truncate bool) {
	truncate = flags&syscall.O_TRUNC != 0
	backing = flags &^ (syscall.O_APPEND | syscall.O_TRUNC | fuse.FMODE_EXEC)
	if backing&syscall.O_ACCMODE == syscall.O_WRONLY {
		backing = backing&^syscall.O_ACCMODE | syscall.O_RDWR
	}
	return backing, truncate
}

// Lookup reports the logical size too: the kernel sets a file's size from it.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	child, errno := n.LoopbackNode.Lookup(ctx, name, out)
	if errno != 0 {
		return nil, errno
	}
	if cn, ok := child.Operations().(*node); ok {
		cn.applySize(&out.Attr)
	}
	return child, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	backing, truncate := openFlags(flags)
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, backing)
	if errno == syscall.EACCES && backing != flags&^(syscall.O_APPEND|syscall.O_TRUNC|fuse.FMODE_EXEC) {
		fh, fuseFlags, errno = n.LoopbackNode.Open(ctx, flags&^(syscall.O_APPEND|syscall.O_TRUNC|fuse.FMODE_EXEC))
	}
	if errno != 0 {
		return nil, 0, errno
	}
	h, errno := newHandle(n, fh)
	if errno != 0 {
		fh.(fs.FileReleaser).Release(ctx)
		return nil, 0, errno
	}
	if truncate {
		if errno := n.cache.truncate(n.ino(), h.fd, n.EmbeddedInode(), 0); errno != 0 {
			h.Release(ctx)
			return nil, 0, errno
		}
	}
	return h, fuseFlags, 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32,
	out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	backing, truncate := openFlags(flags)
	child, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, backing, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	cn, _ := child.Operations().(*node)
	h, errno := newHandle(cn, fh)
	if errno != 0 {
		fh.(fs.FileReleaser).Release(ctx)
		return nil, nil, 0, errno
	}
	if truncate && cn != nil {
		if errno := n.cache.truncate(cn.ino(), h.fd, child, 0); errno != 0 {
			h.Release(ctx)
			return nil, nil, 0, errno
		}
		if size, ok := n.cache.size(cn.ino()); ok {
			out.Attr.Size = uint64(size)
		}
	}
	return child, h, fuseFlags, 0
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if errno := n.LoopbackNode.Getattr(ctx, unwrap(f), out); errno != 0 {
		return errno
	}
	n.applySize(&out.Attr)
	return 0
}

// applySize reports the logical (unsynced) size instead of the backing file's.
func (n *node) applySize(a *fuse.Attr) {
	if size, ok := n.cache.size(n.ino()); ok {
		a.Size = uint64(size)
		a.Blocks = (uint64(size) + 511) / 512
	}
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn,
	out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		if errno := n.truncate(f, int64(size)); errno != 0 {
			return errno
		}
		in.Valid &^= fuse.FATTR_SIZE
	}
	if errno := n.LoopbackNode.Setattr(ctx, unwrap(f), in, out); errno != 0 {
		return errno
	}
	n.applySize(&out.Attr)
	return 0
}

// truncate changes the size in the cache, through the handle if there is one,
// else through a backing file opened for it.
func (n *node) truncate(f fs.FileHandle, size int64) syscall.Errno {
	if h, ok := f.(*handle); ok {
		return n.cache.truncate(n.ino(), h.fd, n.EmbeddedInode(), size)
	}
	fd, err := syscall.Open(n.backingPath(), syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fs.ToErrno(err)
	}
	defer syscall.Close(fd)
	return n.cache.truncate(n.ino(), fd, n.EmbeddedInode(), size)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	victim := n.GetChild(name)
	if errno := n.LoopbackNode.Unlink(ctx, name); errno != 0 {
		return errno
	}
	if victim != nil {
		n.cache.forgetIfDeleted(victim.StableAttr().Ino)
	}
	return 0
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder,
	newName string, flags uint32) syscall.Errno {
	victim := newParent.EmbeddedInode().GetChild(newName)
	if errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags); errno != 0 {
		return errno
	}
	if victim != nil {
		n.cache.forgetIfDeleted(victim.StableAttr().Ino)
	}
	return 0
}

// handle is an open file: the loopback handle for everything but data, the
// page cache for data. It deliberately has no PassthroughFd: FUSE passthrough
// would send reads and writes straight to the backing file.
type handle struct {
	lf    *fs.LoopbackFile
	fd    int // the loopback handle's descriptor, valid until Release
	node  *node
	cache *pageCache
}

var (
	_ fs.FileReader    = (*handle)(nil)
	_ fs.FileWriter    = (*handle)(nil)
	_ fs.FileFsyncer   = (*handle)(nil)
	_ fs.FileFlusher   = (*handle)(nil)
	_ fs.FileReleaser  = (*handle)(nil)
	_ fs.FileGetattrer = (*handle)(nil)
	_ fs.FileAllocater = (*handle)(nil)
)

func newHandle(n *node, fh fs.FileHandle) (*handle, syscall.Errno) {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok || n == nil {
		return nil, syscall.EIO
	}
	fd, ok := lf.PassthroughFd()
	if !ok {
		return nil, syscall.EBADF
	}
	return &handle{lf: lf, fd: fd, node: n, cache: n.cache}, 0
}

// unwrap gives go-fuse's loopback the handle it knows.
func unwrap(f fs.FileHandle) fs.FileHandle {
	if h, ok := f.(*handle); ok {
		return h.lf
	}
	return f
}

func (h *handle) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, cached, errno := h.cache.read(h.node.ino(), buf, off)
	if errno != 0 {
		return nil, errno
	}
	if !cached {
		return fuse.ReadResultFd(uintptr(h.fd), off, len(buf)), 0
	}
	return fuse.ReadResultData(buf[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	return h.cache.write(h.node.ino(), h.fd, h.node.EmbeddedInode(), data, off)
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return h.cache.sync(h.node.ino(), h.fd)
}

// Flush (at every close) writes nothing back: closing a file is no fsync.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return 0 }

func (h *handle) Release(ctx context.Context) syscall.Errno { return h.lf.Release(ctx) }

func (h *handle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	if errno := h.lf.Getattr(ctx, out); errno != 0 {
		return errno
	}
	h.node.applySize(&out.Attr)
	return 0
}

// Allocate (fallocate) is not supported: it would change the backing file's size
// behind the cache.
func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	return syscall.EOPNOTSUPP
}
