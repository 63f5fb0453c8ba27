package quota

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	blockSize = 4096
	inodeSize = 256 // 128-byte inodes cannot hold timestamps past 2038
	// bytesPerInodeMin caps the inode count at one per block: every inode
	// costs inodeSize bytes of the image, and a module cannot put data in
	// more files than there are blocks.
	bytesPerInodeMin = blockSize
)

// imageInodes is the inode count asked of mkfs for a quota: the request,
// capped at one inode per block.
func imageInodes(bytes, inodes int64) int64 {
	return min(inodes, bytes/bytesPerInodeMin)
}

// imageBlocks is the image's size in filesystem blocks (Bytes rounded down
// to whole blocks: the limit never exceeds the request).
func imageBlocks(bytes int64) int64 { return bytes / blockSize }

// mkfsArgs are the arguments to mkfs.ext4 for a fresh image at path.
//   - -m 0: no blocks reserved for root; the module is the only user.
//   - lazy_itable_init, lazy_journal_init: the file is new and sparse, so
//     the inode tables and journal already read as zeroes; writing them
//     again would only fill the holes (1 GiB: 33 MB written vs 0.7 MB).
//   - discard (the default, on a file a punched hole): afterwards mkfs knows
//     the inode tables read as zeroes and marks every group ITABLE_ZEROED.
//     With nodiscard it did not, and the kernel's lazy init thread set out
//     to zero 256 MiB of inode tables after every mount (a module stopped
//     before it finished started it again at its next mount).
//   - root_owner=0:0: the runtime sets the module's owner after mounting.
func mkfsArgs(path string, bytes, inodes int64) []string {
	return []string{
		"-q", "-F", "-t", "ext4", "-m", "0",
		"-b", strconv.Itoa(blockSize), "-I", strconv.Itoa(inodeSize),
		"-N", strconv.FormatInt(imageInodes(bytes, inodes), 10),
		"-E", "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0",
		path, strconv.FormatInt(imageBlocks(bytes), 10),
	}
}

// toolEnv is the environment of e2fsprogs: none of the daemon's.
var toolEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}

func runMkfs(mkfs, path string, bytes, inodes int64) error {
	cmd := exec.Command(mkfs, mkfsArgs(path, bytes, inodes)...)
	cmd.Env = toolEnv
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %v: %w: %s", mkfs, cmd.Args[1:], err, out)
	}
	return nil
}

// superblock is what Attach needs from an ext4 superblock.
type superblock struct {
	Blocks    int64 // filesystem size in blocks
	BlockSize int64
	Inodes    int64
}

// Bytes is the filesystem's size.
func (s superblock) Bytes() int64 { return s.Blocks * s.BlockSize }

// readSuperblock reads the primary superblock (1024 bytes at offset 1024)
// of an unmounted image.
func readSuperblock(r io.ReaderAt, name string) (superblock, error) {
	var b [1024]byte
	if _, err := r.ReadAt(b[:], 1024); err != nil {
		return superblock{}, fmt.Errorf("read superblock of %s: %w", name, err)
	}
	le := binary.LittleEndian
	if magic := le.Uint16(b[0x38:]); magic != 0xEF53 {
		return superblock{}, fmt.Errorf("%s: not an ext4 image (superblock magic %#x, want 0xef53)", name, magic)
	}
	logBS := le.Uint32(b[0x18:])
	if logBS > 6 {
		return superblock{}, fmt.Errorf("%s: superblock s_log_block_size %d is out of range", name, logBS)
	}
	blocks := uint64(le.Uint32(b[0x04:]))
	const incompat64bit = 0x80
	if le.Uint32(b[0x60:])&incompat64bit != 0 {
		blocks |= uint64(le.Uint32(b[0x150:])) << 32
	}
	return superblock{Blocks: int64(blocks), BlockSize: 1024 << logBS, Inodes: int64(le.Uint32(b[0x00:]))}, nil
}

// tool runs an e2fsprogs program found beside mkfs.ext4.
func (b *imageBackend) tool(name string, args ...string) error {
	path := filepath.Join(filepath.Dir(b.mkfs), name)
	cmd := exec.Command(path, args...)
	cmd.Env = toolEnv
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// fsck checks an unmounted image before resize2fs, which insists on it.
// Exit status 1 means errors were corrected, which is fine.
func (b *imageBackend) fsck(path string) error {
	err := b.tool("e2fsck", "-f", "-p", path)
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return nil
	}
	return err
}
