//! The writer stage: frames from the queue to the socket, coalesced into vectored writes (SPEC §6.2).

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use framepipe_flow::queue::Receiver;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::frame::{Frame, IoVecs, MAX_IOV};
use crate::stats::Stats;

/// Why the writer stopped early.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// A write failed.
    Io(io::Error),
    /// The socket accepted no bytes for `stall_timeout` while there were bytes to write.
    Stalled {
        /// How long it accepted nothing.
        waited: Duration,
    },
}

/// Writes every frame from `rx` to `stream` until the queue is closed and empty.
///
/// Takes the next frame, then whatever else is already queued up to `batch_bytes` (and 64 frames), and
/// hands them to the kernel with one `writev`; a partial write resumes where it stopped. It waits only
/// for frames (queue empty: everything taken has been written, nothing is buffered here) and for the
/// socket to become writable again (the peer's window is closed: backpressure). No allocation per frame
/// or per write: the I/O slices live on the stack.
///
/// The wait for the socket is bounded by `stall`, counted from the last write the socket accepted or
/// from when there was something to write, whichever is later (SPEC §6.2.2); waiting for frames is not.
pub(crate) async fn write_frames(
    stream: &TcpStream,
    rx: &mut Receiver<Frame>,
    batch_bytes: usize,
    stall: Option<Duration>,
    stats: &Stats,
) -> Result<(), WriteError> {
    let gauge = stats.writing_gauge();
    let mut batch: VecDeque<Frame> = VecDeque::with_capacity(MAX_IOV / 2);
    // Bytes of the frame at the front of `batch` already written.
    let mut front_done = 0usize;
    // Bytes in `batch` not yet written.
    let mut pending = 0usize;
    loop {
        if batch.is_empty() {
            match rx.recv().await {
                Some(frame) => {
                    gauge.add(frame.wire_len());
                    pending += frame.wire_len();
                    batch.push_back(frame);
                }
                None => return Ok(()),
            }
        }
        while pending < batch_bytes && batch.len() < MAX_IOV / 2 {
            let Some(frame) = rx.try_recv() else { break };
            gauge.add(frame.wire_len());
            pending += frame.wire_len();
            batch.push_back(frame);
        }
        // There are bytes to write from now; the socket must take some of them before `deadline`.
        let since = Instant::now();
        let deadline = stall.and_then(|limit| since.checked_add(limit));
        let written = loop {
            let ready = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, stream.writable())
                    .await
                    .map_err(|_| WriteError::Stalled {
                        waited: since.elapsed(),
                    })?,
                None => stream.writable().await,
            };
            ready.map_err(WriteError::Io)?;
            let mut iov = IoVecs::new();
            let mut skip = front_done;
            for frame in &batch {
                if iov.is_full() {
                    break;
                }
                frame.push_slices(skip, &mut iov);
                skip = 0;
            }
            match stream.try_write_vectored(iov.as_slices()) {
                Ok(0) => return Err(WriteError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(WriteError::Io(e)),
            }
        };
        pending -= written;
        stats.add_bytes_written(written as u64);
        let mut left = front_done + written;
        while let Some(front) = batch.front() {
            let len = front.wire_len();
            if left < len {
                break;
            }
            left -= len;
            gauge.remove(len);
            stats.add_frame_written();
            batch.pop_front();
        }
        front_done = left;
    }
}
