//! Advice to the kernel about a file's pages in the page cache
//! (`posix_fadvise`): the journal and the checkpoint writer give back
//! pages they have synced and will not read again, and a journal replay
//! asks for the next segment ahead of reading it.

use std::os::fd::RawFd;

/// The page size byte ranges are counted in when pages are given back.
pub const PAGE_BYTES: u64 = 4096;

/// Gives the kernel back the cached pages of bytes `from..to` of `fd`
/// (`to` `None`: to the end of the file). Only clean pages go: call it on
/// what a sync or a finished writeback has made clean. Advisory: a
/// refusal changes nothing else. An empty range does nothing.
pub fn give_back(fd: RawFd, from: u64, to: Option<u64>) {
    advise(fd, from, to, libc::POSIX_FADV_DONTNEED);
}

/// Asks the kernel to start reading bytes `from..to` of `fd` (`to`
/// `None`: to the end) into the page cache; it returns once the reads are
/// issued. Advisory, like [`give_back`].
pub fn read_ahead(fd: RawFd, from: u64, to: Option<u64>) {
    advise(fd, from, to, libc::POSIX_FADV_WILLNEED);
}

fn advise(fd: RawFd, from: u64, to: Option<u64>, advice: libc::c_int) {
    // A length of 0 means "to the end" to the kernel.
    let len = match to {
        Some(to) if to <= from => return,
        Some(to) => to - from,
        None => 0,
    };
    let from = libc::off_t::try_from(from).unwrap_or(libc::off_t::MAX);
    let len = libc::off_t::try_from(len).unwrap_or(0);
    // SAFETY: an advisory call on a descriptor the caller holds open; it
    // reads and writes no memory of ours.
    unsafe { libc::posix_fadvise(fd, from, len, advice) };
}
