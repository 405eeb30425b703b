//! Control frames of a session stream and their payloads (SPEC §9.1, §9.3).

use std::fmt;

use bytes::{BufMut, BytesMut};

use crate::limits::{HEADER_LEN, MAX_CONTROL_LENGTH};
use crate::{escape_preview, Error, Notice};

/// The top bit of a header's first byte: set, the frame is a control frame (SPEC §9.1).
pub const CONTROL_BIT: u8 = 0x80;

/// The first byte of a hello, and so of every session stream (SPEC §9.2.1).
pub const HELLO_FIRST_BYTE: u8 = CONTROL_BIT | Kind::Hello as u8;

/// The first 4 bytes of a hello's payload: `FPS1` (SPEC §9.2.4).
pub const MAGIC: [u8; 4] = *b"FPS1";

/// The session protocol version this crate writes (SPEC §9.3).
pub const PROTOCOL_VERSION: u16 = 1;

/// Payload bytes of a hello's layout (SPEC §9.3).
const HELLO_LEN: usize = 48;
/// Payload bytes of a welcome's layout (SPEC §9.3).
const WELCOME_LEN: usize = 40;
/// Payload bytes of an ack's and a goodbye's layout (SPEC §9.3).
const NEXT_LEN: usize = 8;
/// Bytes of a resume secret (SPEC §9.3).
pub const SECRET_LEN: usize = 16;
/// A hello's flag: the session's resume secret follows the layout (SPEC §9.3).
pub const FLAG_SECRET: u16 = 0x0001;

/// What a control frame is (SPEC §9.1.3): the low 7 bits of its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// The producer opens or resumes a session.
    Hello = 1,
    /// The consumer accepts it and says where to resume.
    Welcome = 2,
    /// Cumulative acknowledgement of handled frames.
    Ack = 3,
    /// Liveness on an idle session.
    Heartbeat = 4,
    /// The sender ends the session cleanly.
    Goodbye = 5,
    /// Why the consumer closes (SPEC §6.3).
    Notice = 6,
}

impl Kind {
    /// The kind in the low 7 bits of a control frame's first byte, if it is one of SPEC §9.1.3.
    pub fn from_first_byte(byte: u8) -> Option<Kind> {
        Some(match byte & !CONTROL_BIT {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Ack,
            4 => Kind::Heartbeat,
            5 => Kind::Goodbye,
            6 => Kind::Notice,
            _ => return None,
        })
    }

    /// Its name in messages: `"hello"`, `"ack"`, ….
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hello => "hello",
            Kind::Welcome => "welcome",
            Kind::Ack => "ack",
            Kind::Heartbeat => "heartbeat",
            Kind::Goodbye => "goodbye",
            Kind::Notice => "notice",
        }
    }
}

/// A session's identity: 16 bytes the producer chooses at random for the session's life. Shown by
/// its [`fingerprint`](SessionId::fingerprint) (8 hex digits); the whole id is
/// [`to_hex`](SessionId::to_hex) (32 lowercase hex digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// The id whose 16 bytes are `n`, big-endian.
    pub fn from_u128(n: u128) -> SessionId {
        SessionId(n.to_be_bytes())
    }

    /// The id's 16 bytes as one number, big-endian.
    pub fn as_u128(self) -> u128 {
        u128::from_be_bytes(self.0)
    }
}

impl SessionId {
    /// The whole id as 32 lowercase hex digits. Whoever knows it can name the session in a hello
    /// (taking it over needs its [`ResumeSecret`] too), so show it only where the id itself is
    /// needed, such as a store's file name; logs and reports show [`fingerprint`](Self::fingerprint).
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.as_u128())
    }

    /// A short name for logs and reports: the first 8 hex digits of the id (SPEC §10.4.6), enough
    /// to tell a machine's sessions apart and to find a session's file in a store's directory,
    /// never enough to name the session in a hello. `Display` shows this.
    pub fn fingerprint(self) -> String {
        format!("{:08x}", self.as_u128() >> 96)
    }
}

/// Shows the [`fingerprint`](SessionId::fingerprint), never the whole id (SPEC §10.4.6); the
/// whole id is [`to_hex`](SessionId::to_hex).
impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self}…)")
    }
}

/// A session's resume secret (SPEC §9.3, §10.4.5): 16 random bytes the producer draws when the
/// session begins and sends in every hello of the session. The consumer keeps the secret of the
/// hello that began the session and refuses a hello for it without the same secret: knowing a
/// session's id is not enough to resume it.
///
/// It is never shown: `Debug` prints `ResumeSecret(…)` and there is no `Display`. Two secrets are
/// compared in constant time ([`ResumeSecret::matches`]). On a plaintext connection it crosses the
/// network in clear, like everything else there: an attacker on the path can still read it (SPEC
/// §10.4.6); use TLS between hosts.
#[derive(Clone, Copy)]
pub struct ResumeSecret([u8; SECRET_LEN]);

impl ResumeSecret {
    /// The secret made of `bytes`; draw them from the operating system's random source.
    pub const fn from_bytes(bytes: [u8; SECRET_LEN]) -> ResumeSecret {
        ResumeSecret(bytes)
    }

    /// Its bytes, for a store that keeps it.
    pub fn as_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// Whether `proof` is this secret, compared in constant time.
    pub fn matches(&self, proof: &ResumeSecret) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &proof.0[..]).into()
    }
}

impl PartialEq for ResumeSecret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other)
    }
}

impl Eq for ResumeSecret {}

impl fmt::Debug for ResumeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeSecret(…)")
    }
}

/// The pacing a session runs with, proposed in the hello and settled in the welcome (SPEC §9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pacing {
    /// Acknowledge at least every this many frames.
    pub ack_every: u32,
    /// Acknowledge handled frames at least this often, in milliseconds.
    pub ack_interval_ms: u32,
    /// Send a heartbeat after this long without sending anything, in milliseconds.
    pub heartbeat_ms: u32,
}

/// The producer's opening control frame (SPEC §9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version the producer speaks ([`PROTOCOL_VERSION`]).
    pub version: u16,
    /// The session opened or resumed.
    pub session: SessionId,
    /// Sequence number of the first frame the producer still holds.
    pub next: u64,
    /// The producer's `max_frame_length`.
    pub max_frame_length: u32,
    /// The pacing the producer proposes.
    pub pacing: Pacing,
    /// The session's resume secret, proving the producer owns the session (flag [`FLAG_SECRET`]).
    /// A framepipe producer always sends one; a consumer refuses a hello without it.
    pub secret: Option<ResumeSecret>,
}

/// The consumer's answer to a hello (SPEC §9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    /// Protocol version the consumer speaks ([`PROTOCOL_VERSION`]).
    pub version: u16,
    /// The session accepted.
    pub session: SessionId,
    /// Sequence number of the first frame not yet handed to the handler: where the producer resumes.
    pub next: u64,
    /// The pacing both sides use.
    pub pacing: Pacing,
}

/// One control frame (SPEC §9.3).
///
/// ```
/// use framepipe_codec::session::{Control, SessionFramer, Unit};
/// use framepipe_codec::Builder;
///
/// let mut wire = Control::Ack { next: 42 }.to_frame()?;
/// assert_eq!(&wire[..], b"\x83\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x2a");
/// let mut framer = SessionFramer::new(Builder::new());
/// let Some(Unit::Control { control, offset }) = framer.next_unit(&mut wire)? else { panic!() };
/// assert_eq!((control, offset), (Control::Ack { next: 42 }, 0));
/// # Ok::<(), framepipe_codec::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// The producer opens or resumes a session.
    Hello(Hello),
    /// The consumer accepts it.
    Welcome(Welcome),
    /// Every frame numbered below `next` was handed to the handler and returned.
    Ack {
        /// One past the last frame handled.
        next: u64,
    },
    /// Liveness on an idle session.
    Heartbeat,
    /// The sender ends the session cleanly.
    Goodbye {
        /// From the producer: one past the last frame it sent; from the consumer: a final ack.
        next: u64,
    },
    /// Why the consumer closes.
    Notice(Notice),
}

impl Control {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Control::Hello(_) => Kind::Hello,
            Control::Welcome(_) => Kind::Welcome,
            Control::Ack { .. } => Kind::Ack,
            Control::Heartbeat => Kind::Heartbeat,
            Control::Goodbye { .. } => Kind::Goodbye,
            Control::Notice(_) => Kind::Notice,
        }
    }

    /// Appends the control frame, header and payload, to `dst`. Fails with
    /// [`Error::BodyTooLarge`], writing nothing, only for a notice whose body is over
    /// [`MAX_CONTROL_LENGTH`] (one made by [`Notice::new`] never is).
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), Error> {
        let notice_body = match self {
            Control::Notice(notice) => notice.body(),
            _ => Vec::new(),
        };
        if notice_body.len() > MAX_CONTROL_LENGTH as usize {
            return Err(Error::BodyTooLarge {
                length: notice_body.len() as u64,
                max: MAX_CONTROL_LENGTH,
            });
        }
        let with_secret = |secret: &Option<ResumeSecret>| match secret {
            Some(_) => SECRET_LEN,
            None => 0,
        };
        let len = match self {
            Control::Hello(h) => HELLO_LEN + with_secret(&h.secret),
            Control::Welcome(_) => WELCOME_LEN,
            Control::Ack { .. } | Control::Goodbye { .. } => NEXT_LEN,
            Control::Heartbeat | Control::Notice(_) => notice_body.len(),
        };
        dst.reserve(HEADER_LEN + len);
        // SPEC §9.1.2: 0x80 | kind, then the payload length in 24 bits.
        dst.put_u32(u32::from(CONTROL_BIT | self.kind() as u8) << 24 | len as u32);
        match self {
            Control::Hello(h) => {
                dst.put_slice(&MAGIC);
                dst.put_u16(h.version);
                dst.put_u16(flags(&h.secret));
                dst.put_slice(&h.session.0);
                dst.put_u64(h.next);
                dst.put_u32(h.max_frame_length);
                put_pacing(dst, h.pacing);
                put_secret(dst, &h.secret);
            }
            Control::Welcome(w) => {
                dst.put_u16(w.version);
                dst.put_u16(0);
                dst.put_slice(&w.session.0);
                dst.put_u64(w.next);
                put_pacing(dst, w.pacing);
            }
            Control::Ack { next } | Control::Goodbye { next } => dst.put_u64(*next),
            Control::Heartbeat | Control::Notice(_) => dst.put_slice(&notice_body),
        }
        Ok(())
    }

    /// The control frame as bytes: [`Control::encode`] into a buffer of its own.
    pub fn to_frame(&self) -> Result<BytesMut, Error> {
        let mut out = BytesMut::new();
        self.encode(&mut out)?;
        Ok(out)
    }

    /// Decodes the payload of a control frame of `kind` whose header is at byte `offset` (SPEC
    /// §9.3): a payload shorter than its layout, a hello without [`MAGIC`] or a notice that is not
    /// one is [`Error::BadControl`]; bytes after the layout are ignored.
    pub fn decode(kind: Kind, payload: &[u8], offset: u64) -> Result<Control, Error> {
        let bad = |what: String| Error::BadControl { offset, what };
        let need = match kind {
            Kind::Hello => HELLO_LEN,
            Kind::Welcome => WELCOME_LEN,
            Kind::Ack | Kind::Goodbye => NEXT_LEN,
            Kind::Heartbeat | Kind::Notice => 0,
        };
        if payload.len() < need {
            return Err(bad(format!(
                "a {} frame needs {need} payload bytes, got {}",
                kind.name(),
                payload.len()
            )));
        }
        let mut r = Reader(payload);
        Ok(match kind {
            Kind::Hello => {
                let magic = r.bytes::<4>();
                if magic != MAGIC {
                    return Err(bad(format!(
                        "a hello starts with \"FPS1\", got \"{}\" (not a framepipe session)",
                        escape_preview(&magic, 4)
                    )));
                }
                let (version, flags) = (r.u16(), r.u16());
                let hello = Hello {
                    version,
                    session: SessionId(r.bytes::<16>()),
                    next: r.u64(),
                    max_frame_length: r.u32(),
                    pacing: r.pacing(),
                    secret: None,
                };
                let secret = r.secret(flags, offset)?;
                Control::Hello(Hello { secret, ..hello })
            }
            Kind::Welcome => {
                let (version, _flags) = (r.u16(), r.u16());
                Control::Welcome(Welcome {
                    version,
                    session: SessionId(r.bytes::<16>()),
                    next: r.u64(),
                    pacing: r.pacing(),
                })
            }
            Kind::Ack => Control::Ack { next: r.u64() },
            Kind::Goodbye => Control::Goodbye { next: r.u64() },
            Kind::Heartbeat => Control::Heartbeat,
            Kind::Notice => match Notice::from_body(payload) {
                Some(notice) => Control::Notice(notice),
                None => {
                    return Err(bad(format!(
                        "a notice is a JSON object with a string \"error\", got \"{}\"",
                        escape_preview(payload, 64)
                    )))
                }
            },
        })
    }
}

fn flags(secret: &Option<ResumeSecret>) -> u16 {
    match secret {
        Some(_) => FLAG_SECRET,
        None => 0,
    }
}

fn put_secret(dst: &mut BytesMut, secret: &Option<ResumeSecret>) {
    if let Some(secret) = secret {
        dst.put_slice(secret.as_bytes());
    }
}

fn put_pacing(dst: &mut BytesMut, pacing: Pacing) {
    dst.put_u32(pacing.ack_every);
    dst.put_u32(pacing.ack_interval_ms);
    dst.put_u32(pacing.heartbeat_ms);
}

/// Big-endian fields from a payload already checked to be long enough.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("split at N")
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.bytes())
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.bytes())
    }

    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.bytes())
    }

    /// The secret after a hello's layout when `flags` says one follows (SPEC §9.3).
    fn secret(&mut self, flags: u16, offset: u64) -> Result<Option<ResumeSecret>, Error> {
        if flags & FLAG_SECRET == 0 {
            return Ok(None);
        }
        if self.0.len() < SECRET_LEN {
            let what = format!(
                "a hello whose flags say a resume secret follows needs {SECRET_LEN} more payload bytes, got {}",
                self.0.len()
            );
            return Err(Error::BadControl { offset, what });
        }
        Ok(Some(ResumeSecret(self.bytes())))
    }

    fn pacing(&mut self) -> Pacing {
        Pacing {
            ack_every: self.u32(),
            ack_interval_ms: self.u32(),
            heartbeat_ms: self.u32(),
        }
    }
}
