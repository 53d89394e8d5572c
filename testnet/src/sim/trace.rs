//! The trace digest: SHA-256 over every output a replica carried out, with
//! its time and replica, so two runs of one seed can be compared by one
//! hash. Records are buffered and folded into a hash chain
//! (`d = SHA-256(d || buffer)`) every `FLUSH_BYTES`.

use phalanx_crypto::Digest;

const FLUSH_BYTES: usize = 64 * 1024;

pub struct Trace {
    digest: Digest,
    buffer: Vec<u8>,
    pub records: u64,
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            digest: Digest::ZERO,
            buffer: Vec::with_capacity(FLUSH_BYTES + 4096),
            records: 0,
        }
    }
}

impl Trace {
    /// One record: time, replica, a kind tag, and the kind's key fields.
    pub fn record(&mut self, now_ms: u64, node: u16, kind: &str, fields: &[u8]) {
        self.buffer.extend_from_slice(&now_ms.to_le_bytes());
        self.buffer.extend_from_slice(&node.to_le_bytes());
        self.buffer
            .extend_from_slice(&(kind.len() as u32).to_le_bytes());
        self.buffer.extend_from_slice(kind.as_bytes());
        self.buffer
            .extend_from_slice(&(fields.len() as u32).to_le_bytes());
        self.buffer.extend_from_slice(fields);
        self.records += 1;
        if self.buffer.len() >= FLUSH_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let mut bytes = Vec::with_capacity(32 + self.buffer.len());
        bytes.extend_from_slice(&self.digest.0);
        bytes.extend_from_slice(&self.buffer);
        self.digest = Digest::sha256(&bytes);
        self.buffer.clear();
    }

    /// The digest of everything recorded so far.
    pub fn digest(&mut self) -> Digest {
        self.flush();
        self.digest
    }
}
