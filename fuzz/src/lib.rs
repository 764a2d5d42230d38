//! Helpers shared by the Sluice fuzz targets.
//!
//! Everything here is test code: it may panic, because a panic is how a fuzz target reports a
//! broken invariant.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice_storage::batch::{self, BatchError, CRC_START, HEADER_LEN, LOG_OVERHEAD};

/// Walks `buf` as a sequence of batches and rewrites every batch's CRC-32C so that fuzzed
/// headers and records get past the CRC check. Stops at the first piece whose length field
/// does not fit in what is left.
pub fn fix_crcs(buf: &mut [u8]) {
    let mut pos = 0usize;
    // Bounded: each step advances by at least HEADER_LEN bytes.
    while let Some(total) = batch::peek_total_len(&buf[pos..]) {
        if total < HEADER_LEN || pos + total > buf.len() {
            return;
        }
        let one = &mut buf[pos..pos + total];
        let crc = crc32c::crc32c(&one[CRC_START..]);
        one[17..21].copy_from_slice(&crc.to_be_bytes());
        pos += total;
    }
}

/// The batch bytes a target tests, from fuzzer input. Byte 0 selects a mode: even = the rest
/// as is; odd = the first batch's `batchLength` is set to cover the buffer (bit 1) and every
/// batch's CRC is recomputed, so checks behind the CRC see fuzzed input. `None` when empty.
pub fn batches_from(data: &[u8]) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    let mut buf = rest.to_vec();
    if mode & 1 == 1 {
        if mode & 2 == 2 {
            fix_length(&mut buf);
        }
        fix_crcs(&mut buf);
    }
    Some(buf)
}

/// Sets the `batchLength` field of the batch at the start of `buf` to cover all of `buf`
/// (if `buf` is long enough to hold a header).
pub fn fix_length(buf: &mut [u8]) {
    if buf.len() >= HEADER_LEN {
        let len = (buf.len() - LOG_OVERHEAD) as i32;
        buf[8..12].copy_from_slice(&len.to_be_bytes());
    }
}

/// Runs `split`, `validate` and `records` over `data` and checks that they agree with each
/// other. Returns the number of records decoded (for callers that want to compare).
pub fn check_batches(data: &[u8]) -> usize {
    let mut decoded = 0;
    // validate() on the whole buffer: if it accepts, split must find exactly that batch.
    let whole = batch::validate(data);
    match batch::split(data) {
        Ok(parts) => {
            let mut expect = 0usize;
            for (h, range) in &parts {
                assert_eq!(range.start, expect, "split ranges must be contiguous");
                expect = range.end;
                let one = &data[range.clone()];
                let again = batch::validate(one).expect("split accepted a batch validate refuses");
                assert_eq!(&again, h);
                assert_eq!(h.total_len(), one.len());
                decoded += check_records(one, h);
            }
            assert_eq!(expect, data.len(), "split must cover the whole buffer");
            if let Ok(h) = &whole {
                assert_eq!(parts.len(), 1);
                assert_eq!(&parts[0].0, h);
            }
        }
        Err(_) => {
            assert!(whole.is_err(), "validate accepted a buffer split refuses");
        }
    }
    decoded
}

/// Decodes the records of one validated batch; checks count and offsets on success.
fn check_records(one: &[u8], h: &batch::BatchHeader) -> usize {
    match batch::records(one) {
        Ok(recs) => {
            assert_eq!(
                recs.len(),
                usize::try_from(h.records_count).unwrap_or(usize::MAX),
                "records() returned a different number of records than recordsCount"
            );
            recs.len()
        }
        Err(BatchError::Truncated | BatchError::BadCrc { .. } | BatchError::BadMagic(_)) => {
            panic!("records() refused a batch that validate() accepted with a header error")
        }
        Err(_) => 0,
    }
}

/// Builds a request frame (without length prefix): a valid header for `api`/`version`
/// followed by `body`.
pub fn request_frame(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: bool,
    body: &[u8],
) -> Bytes {
    let mut buf = BytesMut::with_capacity(32 + body.len());
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.then(|| StrBytes::from_static_str("sluice-fuzz")));
    header
        .encode(&mut buf, api.request_header_version(version))
        .expect("encoding a request header cannot fail");
    buf.put_slice(body);
    buf.freeze()
}

/// A fuzzed partition directory for the `recovery` target.
#[derive(Debug, Default)]
pub struct RecoveryInput {
    /// `clean-shutdown` marker present.
    pub clean: bool,
    /// Contents of `recovery-point` (as an offset), if present.
    pub recovery_point: Option<i64>,
    /// Contents of `log-start-offset`, if present.
    pub log_start: Option<i64>,
    /// Recompute the CRC of every batch-shaped piece of each segment.
    pub fix_crc: bool,
    /// Raw `00000000000000000000.index`.
    pub index: Option<Vec<u8>>,
    /// Raw `00000000000000000000.timeindex`.
    pub timeindex: Option<Vec<u8>>,
    /// Raw `leader-epoch-checkpoint`.
    pub epoch_checkpoint: Option<Vec<u8>>,
    /// A second segment: (base offset, bytes).
    pub second: Option<(i64, Vec<u8>)>,
    /// Raw `00000000000000000000.log`.
    pub segment: Vec<u8>,
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn u16(&mut self) -> u16 {
        let v = match self.0 {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => 0,
        };
        self.0 = self.0.get(2..).unwrap_or(&[]);
        v
    }
    fn bytes(&mut self) -> Vec<u8> {
        let n = (self.u16() as usize).min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
}

/// Flag bits of the first byte of a `recovery` input.
pub mod flags {
    /// `clean-shutdown` marker.
    pub const CLEAN: u8 = 1;
    /// u16 recovery point follows.
    pub const RECOVERY_POINT: u8 = 2;
    /// u16 log start offset follows.
    pub const LOG_START: u8 = 4;
    /// Fix CRCs.
    pub const FIX_CRC: u8 = 8;
    /// u16-length-prefixed `.index` follows.
    pub const INDEX: u8 = 16;
    /// u16-length-prefixed `.timeindex` follows.
    pub const TIMEINDEX: u8 = 32;
    /// u16-length-prefixed `leader-epoch-checkpoint` follows.
    pub const EPOCHS: u8 = 64;
    /// u16 base offset and u16-length-prefixed second segment follow.
    pub const SECOND: u8 = 128;
}

impl RecoveryInput {
    /// Parses the byte layout described on the `recovery` target. Never fails: missing bytes
    /// read as zeros / empty.
    pub fn parse(data: &[u8]) -> Self {
        let Some((&f, rest)) = data.split_first() else {
            return RecoveryInput::default();
        };
        let mut c = Cursor(rest);
        let mut input = RecoveryInput {
            clean: f & flags::CLEAN != 0,
            fix_crc: f & flags::FIX_CRC != 0,
            ..Default::default()
        };
        if f & flags::RECOVERY_POINT != 0 {
            input.recovery_point = Some(i64::from(c.u16()));
        }
        if f & flags::LOG_START != 0 {
            input.log_start = Some(i64::from(c.u16()));
        }
        if f & flags::INDEX != 0 {
            input.index = Some(c.bytes());
        }
        if f & flags::TIMEINDEX != 0 {
            input.timeindex = Some(c.bytes());
        }
        if f & flags::EPOCHS != 0 {
            input.epoch_checkpoint = Some(c.bytes());
        }
        if f & flags::SECOND != 0 {
            let base = i64::from(c.u16());
            input.second = Some((base, c.bytes()));
        }
        input.segment = c.0.to_vec();
        input
    }

    /// Serializes back into the byte layout (used to write seed corpora).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut f = 0u8;
        let mut out = Vec::new();
        let put16 = |out: &mut Vec<u8>, v: u16| out.extend_from_slice(&v.to_be_bytes());
        let put_bytes = |out: &mut Vec<u8>, b: &[u8]| {
            let n = b.len().min(u16::MAX as usize);
            out.extend_from_slice(&(n as u16).to_be_bytes());
            out.extend_from_slice(&b[..n]);
        };
        if self.clean {
            f |= flags::CLEAN;
        }
        if self.fix_crc {
            f |= flags::FIX_CRC;
        }
        if let Some(rp) = self.recovery_point {
            f |= flags::RECOVERY_POINT;
            put16(&mut out, rp as u16);
        }
        if let Some(ls) = self.log_start {
            f |= flags::LOG_START;
            put16(&mut out, ls as u16);
        }
        if let Some(b) = &self.index {
            f |= flags::INDEX;
            put_bytes(&mut out, b);
        }
        if let Some(b) = &self.timeindex {
            f |= flags::TIMEINDEX;
            put_bytes(&mut out, b);
        }
        if let Some(b) = &self.epoch_checkpoint {
            f |= flags::EPOCHS;
            put_bytes(&mut out, b);
        }
        if let Some((base, b)) = &self.second {
            f |= flags::SECOND;
            put16(&mut out, *base as u16);
            put_bytes(&mut out, b);
        }
        out.extend_from_slice(&self.segment);
        let mut all = vec![f];
        all.extend(out);
        all
    }

    /// Writes the directory into a fresh `MemoryBackend`, opens it and checks the invariants
    /// documented on the `recovery` target. Panics on a violation.
    pub fn run(&self) {
        use sluice_storage::{Backend, Log, LogConfig, MemoryBackend};
        use std::path::Path;
        use std::sync::Arc;

        let mem = MemoryBackend::new();
        let dir = Path::new("/p/topic-0");
        mem.create_dir_all(dir).expect("mkdir");
        let mut seg = self.segment.clone();
        if self.fix_crc {
            fix_crcs(&mut seg);
        }
        mem.set_contents(&dir.join(format!("{:020}.log", 0)), seg);
        if let Some((base, data)) = &self.second {
            let mut data = data.clone();
            if self.fix_crc {
                fix_crcs(&mut data);
            }
            mem.set_contents(&dir.join(format!("{base:020}.log")), data);
        }
        if let Some(b) = &self.index {
            mem.set_contents(&dir.join(format!("{:020}.index", 0)), b.clone());
        }
        if let Some(b) = &self.timeindex {
            mem.set_contents(&dir.join(format!("{:020}.timeindex", 0)), b.clone());
        }
        if let Some(b) = &self.epoch_checkpoint {
            mem.set_contents(&dir.join("leader-epoch-checkpoint"), b.clone());
        }
        if let Some(rp) = self.recovery_point {
            mem.set_contents(
                &dir.join("recovery-point"),
                format!("0\n{rp}\n").into_bytes(),
            );
        }
        if let Some(ls) = self.log_start {
            mem.set_contents(
                &dir.join("log-start-offset"),
                format!("0\n{ls}\n").into_bytes(),
            );
        }
        if self.clean {
            mem.set_contents(&dir.join("clean-shutdown"), Vec::new());
        }
        let backend: Arc<dyn Backend> = Arc::new(mem.clone());
        let config = LogConfig {
            index_interval_bytes: 64,
            ..LogConfig::default()
        };
        let Ok(log) = Log::open(backend.clone(), dir, config.clone()) else {
            return;
        };
        let start = log.log_start_offset();
        let end = log.log_end_offset();
        assert!(start <= end, "log start {start} > log end {end}");
        let rp = self.recovery_point.unwrap_or(0);
        // Which batches recovery validated fully: without a clean marker and with one segment,
        // all of them; otherwise those ending at/after the recovery point (others only got
        // their header checked, like Kafka).
        let fully_checked = |last: i64| (!self.clean && self.second.is_none()) || last >= rp;
        let mut off = start;
        let mut steps = 0;
        while off < end && steps < 10_000 {
            steps += 1;
            let info = log
                .read(off, 1 << 20, i64::MAX)
                .unwrap_or_else(|e| panic!("read({off}) in [{start}, {end}) failed: {e}"));
            assert!(!info.data.is_empty(), "empty read at {off} < log end {end}");
            let mut pos = 0usize;
            let mut next = off;
            let mut first = true;
            while pos < info.data.len() {
                let rest = &info.data[pos..];
                let h = batch::BatchHeader::parse(rest)
                    .unwrap_or_else(|e| panic!("read returned a bad header at {off}: {e}"));
                let one = rest
                    .get(..h.total_len())
                    .unwrap_or_else(|| panic!("read returned a partial batch at {off}"));
                if fully_checked(h.last_offset()) {
                    if let Err(e) = batch::validate_stored(one) {
                        panic!(
                            "read returned an invalid batch at offset {}: {e}",
                            h.base_offset
                        );
                    }
                }
                if first {
                    assert!(
                        h.base_offset <= off && off <= h.last_offset(),
                        "first batch [{}, {}] does not contain {off}",
                        h.base_offset,
                        h.last_offset()
                    );
                    first = false;
                } else {
                    assert_eq!(h.base_offset, next, "offsets not contiguous");
                }
                next = h.next_offset();
                pos += h.total_len();
            }
            assert!(next > off, "no progress at {off}");
            off = next;
        }
        assert!(off >= end);
        // A clean close and reopen must succeed and keep the same offsets.
        if log.close().is_ok() {
            drop(log);
            let again = Log::open(backend, dir, config)
                .unwrap_or_else(|e| panic!("reopen after clean close failed: {e}"));
            assert_eq!(again.log_end_offset(), end, "log end changed across reopen");
            assert_eq!(
                again.log_start_offset(),
                start,
                "log start changed across reopen"
            );
        }
    }
}

/// The bodies of the fuzz targets that take raw bytes. Each `fuzz_targets/*.rs` is a one-line
/// wrapper around one of these, and `cargo test` replays every committed corpus through the
/// same functions (crates/protocol/tests/corpus_replay.rs), so the test command checks the
/// very invariants the fuzzer checks. A panic is a broken invariant.
pub mod targets {
    use super::{batches_from, check_batches, request_frame, RecoveryInput};
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::ApiKey;
    use sluice_protocol::frame::{read_frame, FrameError};
    use sluice_protocol::{api, decode_request, ProtocolError};

    /// `request_header`: arbitrary bytes as a whole request frame.
    pub fn request_header(data: &[u8]) {
        let res = decode_request(Bytes::copy_from_slice(data));
        match res {
            Ok(req) => {
                let range = api::supported(req.api_key).expect("decoded an unsupported api");
                let v = req.header.request_api_version;
                assert!(v >= range.min && v <= range.max);
                assert_eq!(req.header.request_api_key, req.api_key as i16);
            }
            Err(ProtocolError::ShortFrame(n)) => assert!(n < 8 && n == data.len()),
            Err(ProtocolError::UnknownApiKey(k)) => assert!(ApiKey::try_from(k).is_err()),
            Err(ProtocolError::UnsupportedApi(k)) => assert!(api::supported(k).is_none()),
            Err(ProtocolError::UnsupportedApiVersions { correlation_id, .. }) => {
                assert_eq!(
                    Some(correlation_id),
                    sluice_protocol::peek_correlation_id(data)
                );
                let resp = sluice_protocol::unsupported_api_versions_response(correlation_id);
                assert!(resp.len() > 8);
            }
            Err(_) => {}
        }
    }

    /// `request_body`: byte 0 picks an API from `api::SUPPORTED`, byte 1 a version inside its
    /// range, byte 2 header options; a valid header is built and the rest of the input is the
    /// body. Decoding must not panic or abort and must refuse only the body; re-encoding a
    /// decoded body must not panic.
    pub fn request_body(data: &[u8]) {
        if data.len() < 3 {
            return;
        }
        let (api, range) = api::SUPPORTED[data[0] as usize % api::SUPPORTED.len()];
        let span = (range.max - range.min + 1) as usize;
        let version = range.min + (data[1] as usize % span) as i16;
        let client_id = data[2] & 1 == 1;
        let frame = request_frame(api, version, 0x5eed, client_id, &data[3..]);
        match decode_request(frame) {
            Ok(req) => {
                assert_eq!(req.api_key, api);
                assert_eq!(req.header.correlation_id, 0x5eed);
                assert_eq!(req.header.request_api_version, version);
                // Encoding a decoded request must not panic. (Whether it decodes back is not
                // checked: kafka-protocol's encoder is not an exact inverse for every fuzzed
                // body, e.g. DescribeConfigs v4 with odd tagged fields, and the broker never
                // re-encodes a request, so that asymmetry cannot reach a client.)
                let mut buf = BytesMut::new();
                let _ = req.body.encode(&mut buf, version);
            }
            Err(ProtocolError::BadBody {
                api: a, version: v, ..
            }) => {
                assert_eq!((a, v), (api, version));
            }
            Err(e) => panic!("valid header refused: {e}"),
        }
    }

    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime");
    }

    /// `frame`: byte 0 sets the maximum frame size, the rest is a byte stream read frame by
    /// frame until it is exhausted or refused.
    pub fn frame(data: &[u8]) {
        let Some((&m, rest)) = data.split_first() else {
            return;
        };
        let max = 1 + (m as usize) * 4;
        RT.with(|rt| {
            rt.block_on(async {
                let mut reader: &[u8] = rest;
                let mut consumed = 0usize;
                // Bounded: each successful frame consumes at least 5 bytes.
                loop {
                    let before = reader.len();
                    match read_frame(&mut reader, max).await {
                        Ok(frame) => {
                            assert!(!frame.is_empty() && frame.len() <= max);
                            let start = consumed + 4;
                            assert_eq!(&frame[..], &rest[start..start + frame.len()]);
                            consumed += 4 + frame.len();
                            assert_eq!(before - reader.len(), 4 + frame.len());
                        }
                        Err(FrameError::Closed) => {
                            assert!(before < 4);
                            break;
                        }
                        Err(FrameError::InvalidLength(l)) => {
                            assert!(l <= 0);
                            break;
                        }
                        Err(FrameError::TooLarge { len, max: m2 }) => {
                            assert!(len as usize > max && m2 == max);
                            break;
                        }
                        Err(FrameError::Io(_)) => break,
                    }
                }
                assert!(consumed <= rest.len());
            })
        });
    }

    /// `record_batch`: the input as batch bytes (see `batches_from`) through `split`,
    /// `validate` and `records`, which must agree.
    pub fn record_batch(data: &[u8]) {
        if let Some(buf) = batches_from(data) {
            check_batches(&buf);
        }
    }

    /// `follower_append`: the input as a leader's fetch answer through
    /// `Log::append_as_follower` on an in-memory log: it must refuse or append without
    /// panicking, and what it accepts must read back byte for byte.
    pub fn follower_append(data: &[u8]) {
        use sluice_storage::{Log, LogConfig, MemoryBackend};
        use std::path::Path;
        use std::sync::Arc;

        let Some(buf) = batches_from(data) else {
            return;
        };
        let backend = Arc::new(MemoryBackend::new());
        let Ok(log) = Log::open(backend, Path::new("/f"), LogConfig::default()) else {
            return;
        };
        if let Ok(info) = log.append_as_follower(&buf) {
            if info.record_count > 0 {
                let back = log
                    .read(0, usize::MAX, i64::MAX)
                    .expect("read what was appended");
                assert_eq!(
                    &back.data[..],
                    &buf[..],
                    "a follower keeps the leader's bytes"
                );
            }
        }
    }

    /// `recovery`: the input as a partition directory (see `RecoveryInput`) through
    /// `Log::open`, checked by `RecoveryInput::run`.
    pub fn recovery(data: &[u8]) {
        RecoveryInput::parse(data).run();
    }
}
