//! Announcement loading: a WAV file (RIFF/WAVE, integer PCM) that must already be telephone
//! audio — 8 kHz, mono, 16-bit — encoded once at load into both G.711 laws (RFC 3551 §4.5.14),
//! so a call never pays for encoding and never resamples.
//!
//! The file's SHA-256 is taken from the same bytes that are decoded, once, so a call event can
//! name the exact recording that played (`recording_sha256`).
//!
//! Resampling is deliberately not done here: a wrong file is an operator error that should fail
//! `check-config` loudly, and `sox in.wav -r 8000 -c 1 -b 16 out.wav` fixes it in one command.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::g711::Codec;

/// 8 kHz: the G.711 clock rate (RFC 3551 Table 4).
pub const SAMPLE_RATE: u32 = 8000;
/// A disclosure longer than this is a misconfiguration (and would hold a port for minutes).
pub const MAX_DURATION: Duration = Duration::from_secs(120);
/// 120 s of 16-bit samples is 1.92 MB; the rest is room for header and metadata chunks. The
/// bound keeps a wrong path (a disk image, a log) from being read whole before it is refused.
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// The file path comes from our own config, never from a caller, so naming it is fine.
#[derive(Debug, Error)]
#[error("announcement {}: {reason}", path.display())]
pub struct WavError {
    pub path: PathBuf,
    pub reason: Reason,
}

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    #[error("cannot be read ({0:?})")]
    Io(std::io::ErrorKind),
    #[error("is not a WAV file")]
    NotWav,
    #[error("is not integer PCM (use 16-bit signed PCM)")]
    NotPcm,
    #[error("sample rate is {0} Hz, expected 8000 Hz")]
    SampleRate(u32),
    #[error("has {0} channels, expected 1 (mono)")]
    Channels(u16),
    #[error("has {0} bits per sample, expected 16")]
    Bits(u16),
    #[error("is truncated or corrupt")]
    Corrupt,
    #[error("has no audio")]
    Empty,
    #[error("is longer than the maximum of 120 s")]
    TooLong,
    #[error("is larger than 8 MiB")]
    TooLarge,
}

/// An announcement ready to stream, in both laws so either negotiated codec costs nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// Config id (for example `disclosure-de`), recorded in the call event.
    pub id: String,
    /// Version of the disclosure text, so an event proves which wording the caller heard.
    pub version: String,
    pub pcmu: Bytes,
    pub pcma: Bytes,
    pub duration: Duration,
    /// Lowercase hex SHA-256 of the WAV file's bytes, as `sha256sum` prints it.
    pub recording_sha256: String,
}

impl Announcement {
    /// Decodes and encodes the bytes of a WAV file (the sans-IO part of `load`).
    pub fn from_wav(
        id: impl Into<String>,
        version: impl Into<String>,
        wav: &[u8],
    ) -> Result<Self, Reason> {
        let pcm = read(Cursor::new(wav))?;
        Ok(Self::encode(
            id,
            version,
            &pcm,
            hex::encode(Sha256::digest(wav)),
        ))
    }

    /// Builds an announcement from 8 kHz mono 16-bit samples; its `recording_sha256` is that of
    /// the plain WAV file (44-byte header) holding exactly these samples.
    pub fn from_pcm(id: impl Into<String>, version: impl Into<String>, pcm: &[i16]) -> Self {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut wav = Cursor::new(Vec::new());
        // Writing samples into a Vec cannot fail, except past hound's 4 GiB data limit, far
        // beyond what an in-memory announcement holds.
        #[allow(clippy::expect_used)]
        {
            let mut w = hound::WavWriter::new(&mut wav, spec).expect("WAV header into memory");
            for &s in pcm {
                w.write_sample(s).expect("WAV samples into memory");
            }
            w.finalize().expect("WAV into memory");
        }
        Self::encode(id, version, pcm, hex::encode(Sha256::digest(wav.get_ref())))
    }

    fn encode(
        id: impl Into<String>,
        version: impl Into<String>,
        pcm: &[i16],
        recording_sha256: String,
    ) -> Self {
        let samples = u64::try_from(pcm.len()).unwrap_or(u64::MAX);
        Announcement {
            id: id.into(),
            version: version.into(),
            pcmu: Bytes::from(Codec::Pcmu.encode(pcm)),
            pcma: Bytes::from(Codec::Pcma.encode(pcm)),
            duration: Duration::from_micros(samples.saturating_mul(125)),
            recording_sha256,
        }
    }

    /// The encoded audio for a codec (a cheap reference-counted clone).
    pub fn payload(&self, codec: Codec) -> Bytes {
        match codec {
            Codec::Pcmu => self.pcmu.clone(),
            Codec::Pcma => self.pcma.clone(),
        }
    }
}

/// Loads and encodes a WAV file; see the module doc for what is accepted.
pub fn load(path: &Path, id: &str, version: &str) -> Result<Announcement, WavError> {
    let fail = |reason| WavError {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(Reason::Io(e.kind())))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(Reason::Io(e.kind())))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(fail(Reason::TooLarge));
    }
    Announcement::from_wav(id, version, &bytes).map_err(fail)
}

/// Reads and checks the samples from any reader (the sans-IO part, testable on bytes).
pub fn read<R: Read>(reader: R) -> Result<Vec<i16>, Reason> {
    let wav = hound::WavReader::new(reader).map_err(|e| classify(&e))?;
    let spec = wav.spec();
    if spec.sample_format != hound::SampleFormat::Int {
        return Err(Reason::NotPcm);
    }
    if spec.sample_rate != SAMPLE_RATE {
        return Err(Reason::SampleRate(spec.sample_rate));
    }
    if spec.channels != 1 {
        return Err(Reason::Channels(spec.channels));
    }
    if spec.bits_per_sample != 16 {
        return Err(Reason::Bits(spec.bits_per_sample));
    }
    let max = u64::from(SAMPLE_RATE) * MAX_DURATION.as_secs();
    if u64::from(wav.duration()) > max {
        return Err(Reason::TooLong);
    }
    let pcm = wav
        .into_samples::<i16>()
        .collect::<Result<Vec<i16>, _>>()
        .map_err(|e| classify(&e))?;
    if pcm.is_empty() {
        return Err(Reason::Empty);
    }
    Ok(pcm)
}

fn classify(e: &hound::Error) -> Reason {
    match e {
        // hound reports a data chunk shorter than its header promises as `Other`.
        hound::Error::IoError(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::Other
            ) =>
        {
            Reason::Corrupt
        }
        hound::Error::IoError(io) => Reason::Io(io.kind()),
        hound::Error::FormatError(_) => Reason::NotWav,
        hound::Error::Unsupported => Reason::NotPcm,
        _ => Reason::Corrupt,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn write(dir: &Path, name: &str, spec: hound::WavSpec, frames: u32) -> PathBuf {
        let path = dir.join(name);
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..frames * u32::from(spec.channels) {
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => w.write_sample(0.25f32).unwrap(),
                (_, 8) => w.write_sample((i % 100) as i8).unwrap(),
                _ => w.write_sample((i % 1000) as i16).unwrap(),
            }
        }
        w.finalize().unwrap();
        path
    }

    fn spec(rate: u32, channels: u16, bits: u16) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        }
    }

    #[test]
    fn telephone_wav_loads_in_both_laws() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "ok.wav", spec(8000, 1, 16), 4000);
        let a = load(&path, "disclosure-en", "2024-01").unwrap();
        assert_eq!(a.duration, Duration::from_millis(500));
        assert_eq!((a.pcmu.len(), a.pcma.len()), (4000, 4000));
        assert_eq!(a.pcmu[0], 0xFF, "sample 0 is silence in μ-law");
        assert_eq!(a.pcma[0], 0xD5, "sample 0 is silence in A-law");
        assert_eq!(
            (a.id.as_str(), a.version.as_str()),
            ("disclosure-en", "2024-01")
        );
        let file = std::fs::read(&path).unwrap();
        assert_eq!(a.recording_sha256, hex::encode(Sha256::digest(&file)));
    }

    #[test]
    fn recording_hash_is_of_the_file_bytes_not_the_audio() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a.wav", spec(8000, 1, 16), 800);
        let plain = load(&path, "x", "1").unwrap();
        // The same samples with a metadata chunk after the data: other bytes, same audio.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"LIST\x04\x00\x00\x00INFO");
        let riff_len = u32::try_from(bytes.len() - 8).unwrap();
        bytes[4..8].copy_from_slice(&riff_len.to_le_bytes());
        let tagged = Announcement::from_wav("x", "1", &bytes).unwrap();
        assert_eq!(tagged.pcmu, plain.pcmu);
        assert_ne!(tagged.recording_sha256, plain.recording_sha256);
        assert_eq!(tagged.recording_sha256.len(), 64);
        // `from_pcm` names the plain file holding its samples.
        let pcm = read(std::fs::File::open(&path).unwrap()).unwrap();
        let built = Announcement::from_pcm("x", "1", &pcm);
        assert_eq!(built.recording_sha256, plain.recording_sha256);
    }

    #[test]
    fn files_beyond_the_size_bound_are_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.wav");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap();
        assert_eq!(load(&big, "x", "1").unwrap_err().reason, Reason::TooLarge);
    }

    #[test]
    fn wrong_formats_are_rejected_with_file_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let float = hound::WavSpec {
            sample_format: hound::SampleFormat::Float,
            bits_per_sample: 32,
            ..spec(8000, 1, 32)
        };
        let cases = [
            (
                "stereo.wav",
                spec(8000, 2, 16),
                Reason::Channels(2),
                "2 channels",
            ),
            (
                "wide.wav",
                spec(16000, 1, 16),
                Reason::SampleRate(16000),
                "16000 Hz",
            ),
            ("eight.wav", spec(8000, 1, 8), Reason::Bits(8), "8 bits"),
            ("float.wav", float, Reason::NotPcm, "integer PCM"),
        ];
        for (name, spec, reason, words) in cases {
            let path = write(dir.path(), name, spec, 800);
            let err = load(&path, "x", "1").unwrap_err();
            assert_eq!(err.reason, reason, "{name}");
            let shown = err.to_string();
            assert!(shown.contains(name) && shown.contains(words), "{shown}");
        }
    }

    #[test]
    fn non_wav_and_missing_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.wav");
        std::fs::write(&text, b"this is not audio at all, just text").unwrap();
        let err = load(&text, "x", "1").unwrap_err();
        assert_eq!(err.reason, Reason::NotWav);
        assert!(err.to_string().contains("notes.wav: is not a WAV file"));

        let missing = load(&dir.path().join("gone.wav"), "x", "1").unwrap_err();
        assert_eq!(missing.reason, Reason::Io(std::io::ErrorKind::NotFound));
    }

    #[test]
    fn empty_and_truncated_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(dir.path(), "empty.wav", spec(8000, 1, 16), 0);
        assert_eq!(load(&empty, "x", "1").unwrap_err().reason, Reason::Empty);

        let full = write(dir.path(), "full.wav", spec(8000, 1, 16), 800);
        let bytes = std::fs::read(&full).unwrap();
        // Cut in the middle of the data chunk: the header promises more samples than follow.
        assert_eq!(read(&bytes[..bytes.len() - 101]), Err(Reason::Corrupt));
    }

    #[test]
    fn shipped_fixtures_load_as_telephone_audio() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/audio");
        for (file, secs) in [("disclosure-en.wav", 4.36), ("disclosure-de.wav", 5.5345)] {
            let a = load(&dir.join(file), file, "1").unwrap();
            assert!((a.duration.as_secs_f64() - secs).abs() < 0.001, "{file}");
            assert_eq!(a.pcmu.len(), a.pcma.len());
            // Speech, not silence: a good share of samples is away from zero.
            let loud = a.pcmu.iter().filter(|&&c| (c & 0x70) < 0x50).count();
            assert!(loud > a.pcmu.len() / 20, "{file}: {loud} loud samples");
        }
    }
}
