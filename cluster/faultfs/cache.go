// The page cache of faultfs: file data written through the mount but not yet
// fsync'd.
//
// A power cut loses what the kernel's page cache held and the disk did not: every
// write since the file's last fsync. The kernel keeps its page cache across a
// SIGKILL, so a killed process alone can never show a missing fsync. faultfs keeps
// its own cache instead (as LazyFS does): a write lands here, reads and sizes see
// it, an fsync of the file writes it to the backing file and fsyncs that, and a
// crash forgets it.
//
// One fileCache per backing inode (keyed by the loopback inode number, which
// follows the backing file across renames and hard links). It holds the file's
// logical size, the dirty pages, and how much of the backing file is still the
// file's data (a truncation below the backing size makes the rest stale, even if the
// file grows again: reads there see zeros, not the old bytes).
package main

import (
	"sort"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
)

// pageSize is the unit of caching: a write to part of a page loads the rest of
// the page from the backing file first.
const pageSize = 4096

// fileCache is the unsynced state of one file. Invariants: backingValid <= size;
// every cached page holds zeros past size.
type fileCache struct {
	fd           int              // the backing file, read-write, owned by the cache
	inode        *fs.Inode        // last FUSE inode that used it (for kernel invalidation)
	size         int64            // logical size: what stat and reads see
	backingValid int64            // bytes of the backing file that still are the file's data
	pages        map[int64][]byte // page number -> pageSize bytes
	unsynced     int64            // bytes written or truncated since the last sync
}

// cacheStats are the counters the control socket reports.
type cacheStats struct {
	DirtyFiles    int   `json:"dirty_files"`
	UnsyncedBytes int64 `json:"unsynced_bytes"`
	CachedBytes   int64 `json:"cached_bytes"`
	Syncs         int64 `json:"syncs"`
	SyncedBytes   int64 `json:"synced_bytes"`
	Crashes       int64 `json:"crashes"`
	DroppedBytes  int64 `json:"dropped_bytes"`
	Flushes       int64 `json:"flushes"`
}

// pageCache holds every file's unsynced state. One mutex guards it all: a mount
// serves one node, whose writes are serial anyway.
type pageCache struct {
	mu    sync.Mutex
	files map[uint64]*fileCache
	stats cacheStats
}

func newPageCache() *pageCache {
	return &pageCache{files: map[uint64]*fileCache{}}
}

// entry returns the cache of inode `ino`, creating it from the backing file `fd`
// (duplicated: the cache outlives the handle). Caller holds mu.
func (c *pageCache) entry(ino uint64, fd int, inode *fs.Inode) (*fileCache, syscall.Errno) {
	if fc, ok := c.files[ino]; ok {
		if inode != nil {
			fc.inode = inode
		}
		return fc, 0
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, fs.ToErrno(err)
	}
	own, err := syscall.Dup(fd)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	syscall.CloseOnExec(own)
	fc := &fileCache{fd: own, inode: inode, size: st.Size, backingValid: st.Size,
		pages: map[int64][]byte{}}
	c.files[ino] = fc
	return fc, 0
}

// page returns page p of the file, loading it from the backing file. Caller holds mu.
func (fc *fileCache) page(p int64) ([]byte, syscall.Errno) {
	if pg, ok := fc.pages[p]; ok {
		return pg, 0
	}
	pg := make([]byte, pageSize)
	if errno := fc.readBacking(pg, p*pageSize); errno != 0 {
		return nil, errno
	}
	fc.pages[p] = pg
	return pg, 0
}

// readBacking fills buf with the backing file's bytes at off that are still valid,
// zeros elsewhere.
func (fc *fileCache) readBacking(buf []byte, off int64) syscall.Errno {
	valid := fc.backingValid - off
	if valid > int64(len(buf)) {
		valid = int64(len(buf))
	}
	got := 0
	for valid > 0 && int64(got) < valid {
		n, err := syscall.Pread(fc.fd, buf[got:valid], off+int64(got))
		if err != nil {
			return fs.ToErrno(err)
		}
		if n == 0 {
			break // the backing file is shorter than we thought: the rest is zeros
		}
		got += n
	}
	clear(buf[got:])
	return 0
}

// write stores data at off in the cache.
func (c *pageCache) write(ino uint64, fd int, inode *fs.Inode, data []byte, off int64) (uint32, syscall.Errno) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fc, errno := c.entry(ino, fd, inode)
	if errno != 0 {
		return 0, errno
	}
	done := 0
	for done < len(data) {
		pos := off + int64(done)
		pg, errno := fc.page(pos / pageSize)
		if errno != 0 {
			return uint32(done), errno
		}
		done += copy(pg[pos%pageSize:], data[done:])
	}
	if end := off + int64(len(data)); end > fc.size {
		fc.size = end
	}
	fc.unsynced += int64(len(data))
	return uint32(len(data)), 0
}

// read answers a read at off: from the cache if the file has unsynced state,
// else ok=false (the caller reads the backing file directly).
func (c *pageCache) read(ino uint64, buf []byte, off int64) (n int, ok bool, errno syscall.Errno) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fc, cached := c.files[ino]
	if !cached {
		return 0, false, 0
	}
	if off >= fc.size {
		return 0, true, 0
	}
	want := int64(len(buf))
	if off+want > fc.size {
		want = fc.size - off
	}
	for done := int64(0); done < want; {
		pos := off + done
		p := pos / pageSize
		chunk := pageSize - pos%pageSize
		if chunk > want-done {
			chunk = want - done
		}
		dst := buf[done : done+chunk]
		if pg, dirty := fc.pages[p]; dirty {
			copy(dst, pg[pos%pageSize:])
		} else if errno := fc.readBacking(dst, pos); errno != 0 {
			return 0, true, errno
		}
		done += chunk
	}
	return int(want), true, 0
}

// size returns the logical size of a file with unsynced state.
func (c *pageCache) size(ino uint64) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fc, ok := c.files[ino]; ok {
		return fc.size, true
	}
	return 0, false
}

// truncate sets the logical size (ftruncate, O_TRUNC) without touching the backing
// file.
func (c *pageCache) truncate(ino uint64, fd int, inode *fs.Inode, size int64) syscall.Errno {
	c.mu.Lock()
	defer c.mu.Unlock()
	fc, errno := c.entry(ino, fd, inode)
	if errno != 0 {
		return errno
	}
	if size < fc.size {
		for p := range fc.pages {
			if p*pageSize >= size {
				delete(fc.pages, p)
			}
		}
		if pg, ok := fc.pages[size/pageSize]; ok {
			clear(pg[size%pageSize:])
		}
		if fc.backingValid > size {
			fc.backingValid = size
		}
		fc.unsynced += fc.size - size
	} else {
		fc.unsynced += size - fc.size
	}
	fc.size = size
	return 0
}

// sync writes a file's unsynced state to its backing file and fsyncs it (fsync,
// fdatasync). A file without unsynced state is fsync'd through `fd`.
func (c *pageCache) sync(ino uint64, fd int) syscall.Errno {
	c.mu.Lock()
	defer c.mu.Unlock()
	fc, ok := c.files[ino]
	if !ok {
		return fs.ToErrno(syscall.Fsync(fd))
	}
	if errno := fc.writeBack(); errno != 0 {
		return errno
	}
	c.stats.Syncs++
	c.stats.SyncedBytes += fc.unsynced
	c.drop(ino, fc)
	return 0
}

// writeBack makes the backing file hold the logical content, then fsyncs it.
func (fc *fileCache) writeBack() syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Fstat(fc.fd, &st); err != nil {
		return fs.ToErrno(err)
	}
	if fc.backingValid < st.Size { // stale bytes past a truncation must not come back
		if err := syscall.Ftruncate(fc.fd, fc.backingValid); err != nil {
			return fs.ToErrno(err)
		}
	}
	if err := syscall.Ftruncate(fc.fd, fc.size); err != nil {
		return fs.ToErrno(err)
	}
	pages := make([]int64, 0, len(fc.pages))
	for p := range fc.pages {
		pages = append(pages, p)
	}
	sort.Slice(pages, func(i, j int) bool { return pages[i] < pages[j] })
	for _, p := range pages {
		n := fc.size - p*pageSize
		if n > pageSize {
			n = pageSize
		}
		if n <= 0 {
			continue
		}
		if err := pwriteAll(fc.fd, fc.pages[p][:n], p*pageSize); err != nil {
			return fs.ToErrno(err)
		}
	}
	return fs.ToErrno(syscall.Fsync(fc.fd))
}

func pwriteAll(fd int, data []byte, off int64) error {
	for len(data) > 0 {
		n, err := syscall.Pwrite(fd, data, off)
		if err != nil {
			return err
		}
		data, off = data[n:], off+int64(n)
	}
	return nil
}

// drop forgets one file's state. Caller holds mu.
func (c *pageCache) drop(ino uint64, fc *fileCache) {
	syscall.Close(fc.fd)
	delete(c.files, ino)
}

// forgetIfDeleted drops the state of a file whose last name is gone (after an
// unlink or a rename over it): its data can never be read again, and its inode
// number may be reused by a new file.
func (c *pageCache) forgetIfDeleted(ino uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fc, ok := c.files[ino]
	if !ok {
		return
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fc.fd, &st); err == nil && st.Nlink == 0 {
		c.drop(ino, fc)
	}
}

// crash forgets every unsynced write of every file at once, as a power cut does.
// It returns the bytes dropped, the number of files, and the inodes whose kernel
// caches must be invalidated (outside the lock).
func (c *pageCache) crash() (int64, int, []*fs.Inode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var dropped int64
	var inodes []*fs.Inode
	files := len(c.files)
	for ino, fc := range c.files {
		dropped += fc.unsynced
		if fc.inode != nil {
			inodes = append(inodes, fc.inode)
		}
		c.drop(ino, fc)
	}
	c.stats.Crashes++
	c.stats.DroppedBytes += dropped
	return dropped, files, inodes
}

// flush writes every file's unsynced state back and fsyncs it, as a clean
// shutdown does. It returns the bytes written back, the files, and the first error.
func (c *pageCache) flush() (int64, int, syscall.Errno) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var flushed int64
	files := 0
	var first syscall.Errno
	for ino, fc := range c.files {
		if errno := fc.writeBack(); errno != 0 {
			if first == 0 {
				first = errno
			}
			continue
		}
		flushed += fc.unsynced
		files++
		c.drop(ino, fc)
	}
	c.stats.Flushes++
	c.stats.SyncedBytes += flushed
	return flushed, files, first
}

// snapshot returns the counters with the current dirty state.
func (c *pageCache) snapshot() cacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.DirtyFiles = len(c.files)
	for _, fc := range c.files {
		s.UnsyncedBytes += fc.unsynced
		s.CachedBytes += int64(len(fc.pages)) * pageSize
	}
	return s
}
