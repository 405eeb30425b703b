//! One producer connection: source stream → encode → queue → writer → socket (SPEC §6.2).

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use framepipe_codec::{Notice, MAX_NOTICE_LENGTH};
use framepipe_flow::queue;
use framepipe_flow::socket::{buffer_sizes, BufferSizes};
use framepipe_flow::SocketSet;
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::net::TcpStream;

use crate::builder::Builder;
use crate::frame::{Frame, FrameEncoder};
use crate::stats::{Report, Stats};
use crate::writer::write_frames;
use crate::Error;

/// A connected producer. Send one stream with [`Connection::send_json`] or [`Connection::send_raw`].
#[derive(Debug)]
pub struct Connection {
    stream: Arc<TcpStream>,
    config: Builder,
    stats: Stats,
}

/// What the consumer said back, if anything (SPEC §6.3).
enum PeerSaid {
    Notice(Notice),
    /// End of stream with nothing before it: the consumer read everything and closed.
    Closed,
    /// Bytes that are not a notice, or a read error: stop watching, the writes will tell.
    Other,
}

impl Connection {
    pub(crate) fn new(stream: Arc<TcpStream>, config: Builder, sockets: SocketSet) -> Self {
        Connection {
            stream,
            config,
            stats: Stats::new(sockets),
        }
    }

    /// A live view of this connection's counters and stages, for reporting while it runs.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// The consumer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// The socket buffer sizes the kernel granted.
    pub fn buffer_sizes(&self) -> io::Result<BufferSizes> {
        buffer_sizes(&self.stream)
    }

    /// Sends every item of `source` as one typed frame (compact JSON, SPEC §1.4), then closes the
    /// connection and waits for the consumer to close its end.
    ///
    /// # Backpressure and memory
    /// `source` is polled only while the queue has room: when the consumer is slow, the socket stops
    /// being writable, the writer stops taking frames, the queue fills, and this stops polling
    /// `source`. Memory held is at most the queue's budget plus one frame being encoded, the write
    /// batch, and one 256 KiB encoding chunk (SPEC §6.1).
    ///
    /// # Errors
    /// See [`Error`]; every error after connecting says how many frames were written.
    pub async fn send_json<S, T>(self, source: S) -> Result<Report, Error>
    where
        S: Stream<Item = T>,
        T: Serialize,
    {
        let mut encoder = FrameEncoder::new(self.config.max_frame_length);
        let stats = self.stats.clone();
        let frames = source.map(move |item| {
            stats.add_pulled();
            encoder.encode_json(&item)
        });
        self.run(frames).await
    }

    /// Sends every item of `source` as one frame whose body is the item's bytes, unchanged, then
    /// closes like [`Connection::send_json`].
    ///
    /// The bodies are not copied: each is written with its 4-byte header in one vectored write.
    pub async fn send_raw<S>(self, source: S) -> Result<Report, Error>
    where
        S: Stream<Item = Bytes>,
    {
        let encoder = FrameEncoder::new(self.config.max_frame_length);
        let stats = self.stats.clone();
        let frames = source.map(move |body| {
            stats.add_pulled();
            encoder.encode_raw(body)
        });
        self.run(frames).await
    }

    async fn run<S>(self, frames: S) -> Result<Report, Error>
    where
        S: Stream<Item = Result<Frame, framepipe_codec::Error>>,
    {
        let Connection {
            stream,
            config,
            stats,
        } = self;
        let (tx, mut rx) = queue::channel(config.queue, stats.queue_gauge().clone());

        // Stage 1: poll the source only when the previous frame has entered the queue.
        let produce = async {
            let tx = tx; // dropped when this stage ends, so the writer drains and stops
            let encoded = stats.encoded_gauge();
            let mut frames = std::pin::pin!(frames);
            let mut index = 0u64;
            while let Some(frame) = frames.next().await {
                let frame = frame.map_err(|e| (index, e))?;
                let len = frame.wire_len();
                stats.add_encoded(len);
                encoded.add(len);
                let sent = tx.send(frame, len).await;
                encoded.remove(len);
                if sent.is_err() {
                    break; // the writer failed; it reports why
                }
                index += 1;
            }
            Ok::<(), (u64, framepipe_codec::Error)>(())
        };
        // Stage 2: the writer.
        let write = async {
            let result = write_frames(&stream, &mut rx, config.write_batch_bytes, &stats).await;
            drop(rx); // a failed writer releases the producer stage at once
            result
        };
        let work = async { tokio::join!(produce, write) };

        let mut peer = std::pin::pin!(watch_peer(&stream));
        let mut watching = true;
        let mut work = std::pin::pin!(work);
        let mut ticker = tokio::time::interval(config.sample_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (produced, written) = loop {
            tokio::select! {
                done = &mut work => break done,
                said = &mut peer, if watching => match said {
                    PeerSaid::Notice(notice) => {
                        return Err(Error::Rejected { frames_written: stats.frames_written(), notice });
                    }
                    PeerSaid::Closed | PeerSaid::Other => watching = false,
                },
                _ = ticker.tick() => {
                    stats.snapshot();
                }
            }
        };

        if let Err(e) = written {
            // The consumer may have said why before closing: give its notice a moment to arrive.
            if watching {
                if let Ok(PeerSaid::Notice(notice)) =
                    tokio::time::timeout(std::time::Duration::from_millis(200), &mut peer).await
                {
                    return Err(Error::Rejected {
                        frames_written: stats.frames_written(),
                        notice,
                    });
                }
            }
            return Err(Error::from_write(
                e,
                stats.frames_written(),
                stats.bytes_written(),
            ));
        }

        // Everything taken was written: send FIN, then wait for the consumer to close its end.
        let _ = socket2::SockRef::from(&*stream).shutdown(Shutdown::Write);
        let mut confirmed = false;
        if watching {
            match tokio::time::timeout(config.close_timeout, &mut peer).await {
                Ok(PeerSaid::Notice(notice)) => {
                    return Err(Error::Rejected {
                        frames_written: stats.frames_written(),
                        notice,
                    })
                }
                Ok(PeerSaid::Closed) => confirmed = true,
                Ok(PeerSaid::Other) | Err(_) => {}
            }
        }
        if let Err((frame, source)) = produced {
            return Err(Error::Encode {
                frame,
                frames_written: stats.frames_written(),
                source,
            });
        }
        if !confirmed {
            tracing::warn!(
                frames = stats.frames_written(),
                "the consumer did not close its end within {:?}; every frame was written, \
                 but that it read them all is not confirmed",
                config.close_timeout
            );
        }
        Ok(Report {
            snapshot: stats.snapshot(),
            confirmed,
        })
    }
}

/// Reads what the consumer sends back: nothing until it closes, or one notice (SPEC §6.3).
async fn watch_peer(stream: &TcpStream) -> PeerSaid {
    let mut buf = vec![0u8; 4 + MAX_NOTICE_LENGTH as usize + 1];
    let mut got = 0;
    loop {
        if stream.readable().await.is_err() {
            return PeerSaid::Other;
        }
        match stream.try_read(&mut buf[got..]) {
            Ok(0) if got == 0 => return PeerSaid::Closed,
            Ok(0) => {
                return match Notice::parse_frame(&buf[..got]) {
                    Some(n) => PeerSaid::Notice(n),
                    None => PeerSaid::Other,
                }
            }
            Ok(n) => {
                got += n;
                if got == buf.len() {
                    return PeerSaid::Other;
                }
                // A whole notice may be followed by a reset rather than an end of stream.
                if let Some(n) = Notice::parse_frame(&buf[..got]) {
                    return PeerSaid::Notice(n);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => {
                return match Notice::parse_frame(&buf[..got]) {
                    Some(n) => PeerSaid::Notice(n),
                    None => PeerSaid::Other,
                }
            }
        }
    }
}
