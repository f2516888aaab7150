//! `auditrail.seal` events: an epoch key's signature over a stream's chain up to a hash.
//!
//! A seal is itself an event of the stream it seals (it takes the next `seq`). It covers the events after the
//! stream's previous seal (`from`..=`to`, empty for an idle stream) by signing `last_hash`, the hash of event
//! `to`, which commits to everything before it. It names its epoch, the epoch's start and public key (with
//! the certificate the previous epoch's key gave it) and the next epoch's public key, so the verifier can walk
//! from the auditors' root key to any epoch's key with the seals alone.
//!
//! ```json
//! {"event":"auditrail.seal","uid":"…","code":"AR0003I","time":"…",
//!  "seal":{"stream":"node/src","from":1,"to":812,"last_hash":"<hex>","epoch":3,"epoch_start":"…",
//!          "sealed_at":"…","epoch_pub":"<hex>","epoch_cert":"<hex>"|null,"next_pub":"<hex>","sig":"<hex>"}}
//! ```
//! The signature covers every member of `seal` but `sig` (a length-prefixed binary message, so that how a
//! store re-encodes the JSON does not matter).

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::Deserialize;

use super::chain::Hash;
use super::keys::{parse_public, parse_signature, EpochKey};

/// The event type of a seal.
pub const SEAL_EVENT: &str = "auditrail.seal";
/// The event code of a seal.
pub const SEAL_CODE: &str = "AR0003I";
/// The event type announcing a new chain segment after lost or damaged chain state.
pub const RESET_EVENT: &str = "auditrail.integrity_reset";
/// The event code of a chain reset.
pub const RESET_CODE: &str = "AR0004W";
/// The event type announcing, as the first event of an agent's new life, the window of seqs that may have been
/// numbered before a crash and never delivered (events held in a memory buffer die with the process).
///
/// Chained like any event, at seq `to + 1`; besides `event`, `uid`, `code` and `time` it carries `source`,
/// `stream` (the stream it is in), `window: {"from": F, "to": T}` (inclusive; `F = T + 1` is an empty window)
/// and `reason`. `auditrail verify` does not count the missing seqs of a window it honours as tampering.
pub const CRASH_EVENT: &str = "auditrail.integrity_crash";
/// The event code of a crash window announcement.
pub const CRASH_CODE: &str = "AR0005W";

const SEAL_DOMAIN: &[u8] = b"auditrail.seal.v1\0";

/// A seal's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seal {
    /// The stream sealed.
    pub stream: String,
    /// First seq covered (the previous seal's seq + 1).
    pub from: u64,
    /// Last seq covered (the seal's own seq − 1); `to < from` for an idle stream.
    pub to: u64,
    /// Hash of event `to` (the previous seal's hash, or zeros, when nothing is covered).
    pub last_hash: Hash,
    /// The epoch whose key signed.
    pub epoch: u64,
    /// When that epoch began, as its certificate says.
    pub epoch_start: String,
    /// When the seal was made.
    pub sealed_at: String,
    /// The epoch's public key.
    pub epoch_pub: VerifyingKey,
    /// The epoch key's certificate by the previous epoch's key (`None` in epoch 0).
    pub epoch_cert: Option<Signature>,
    /// The next epoch's public key.
    pub next_pub: VerifyingKey,
    /// The signature by the epoch key.
    pub sig: Signature,
}

fn put_str(m: &mut Vec<u8>, s: &str) {
    m.extend_from_slice(&(s.len() as u32).to_be_bytes());
    m.extend_from_slice(s.as_bytes());
}

impl Seal {
    /// The bytes the signature covers.
    pub fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(256);
        m.extend_from_slice(SEAL_DOMAIN);
        put_str(&mut m, &self.stream);
        m.extend_from_slice(&self.from.to_be_bytes());
        m.extend_from_slice(&self.to.to_be_bytes());
        m.extend_from_slice(&self.last_hash);
        m.extend_from_slice(&self.epoch.to_be_bytes());
        put_str(&mut m, &self.epoch_start);
        put_str(&mut m, &self.sealed_at);
        m.extend_from_slice(self.epoch_pub.as_bytes());
        m.extend_from_slice(self.next_pub.as_bytes());
        m
    }

    /// Signs the range `from..=to` of `stream` ending in `last_hash` with `key`.
    pub fn sign(key: &EpochKey, stream: &str, from: u64, to: u64, last_hash: Hash) -> Seal {
        let mut s = Seal {
            stream: stream.to_string(),
            from,
            to,
            last_hash,
            epoch: key.epoch,
            epoch_start: key.epoch_start.clone(),
            sealed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            epoch_pub: key.public(),
            epoch_cert: key.cert,
            next_pub: key.next_public(),
            sig: Signature::from_bytes(&[0; 64]),
        };
        s.sig = key.sign(&s.message());
        s
    }

    /// Whether `sig` is `epoch_pub`'s signature of the rest (says nothing about whether `epoch_pub` is
    /// genuine: that is the certificate chain's job).
    pub fn signature_ok(&self) -> bool {
        self.epoch_pub.verify(&self.message(), &self.sig).is_ok()
    }

    /// The seal event's JSON, without the chain field (the pipeline appends it).
    pub fn to_event(&self) -> Vec<u8> {
        let seal = serde_json::json!({
            "stream": self.stream,
            "from": self.from,
            "to": self.to,
            "last_hash": hex::encode(self.last_hash),
            "epoch": self.epoch,
            "epoch_start": self.epoch_start,
            "sealed_at": self.sealed_at,
            "epoch_pub": hex::encode(self.epoch_pub.as_bytes()),
            "epoch_cert": self.epoch_cert.map(|c| hex::encode(c.to_bytes())),
            "next_pub": hex::encode(self.next_pub.as_bytes()),
            "sig": hex::encode(self.sig.to_bytes()),
        });
        let mut out = Vec::with_capacity(700);
        out.extend_from_slice(b"{\"event\":\"");
        out.extend_from_slice(SEAL_EVENT.as_bytes());
        out.extend_from_slice(b"\",\"uid\":\"");
        out.extend_from_slice(uuid::Uuid::now_v7().to_string().as_bytes());
        out.extend_from_slice(b"\",\"code\":\"");
        out.extend_from_slice(SEAL_CODE.as_bytes());
        out.extend_from_slice(b"\",\"time\":");
        serde_json::to_writer(&mut out, &self.sealed_at).expect("vec");
        out.extend_from_slice(b",\"seal\":");
        serde_json::to_writer(&mut out, &seal).expect("vec");
        out.push(b'}');
        out
    }

    /// Reads the seal of a seal event's text (`Ok(None)` when the event is not a seal).
    pub fn from_event(text: &[u8]) -> Result<Option<Seal>, String> {
        #[derive(Deserialize)]
        struct Outer {
            #[serde(default)]
            event: Option<String>,
            #[serde(default)]
            seal: Option<Wire>,
        }
        #[derive(Deserialize)]
        struct Wire {
            stream: String,
            from: u64,
            to: u64,
            last_hash: String,
            epoch: u64,
            epoch_start: String,
            sealed_at: String,
            epoch_pub: String,
            epoch_cert: Option<String>,
            next_pub: String,
            sig: String,
        }
        let o: Outer = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        if o.event.as_deref() != Some(SEAL_EVENT) {
            return Ok(None);
        }
        let w = o.seal.ok_or("a seal event without a `seal` object")?;
        let mut last_hash = [0u8; 32];
        hex::decode_to_slice(&w.last_hash, &mut last_hash)
            .map_err(|e| format!("last_hash: {e}"))?;
        Ok(Some(Seal {
            stream: w.stream,
            from: w.from,
            to: w.to,
            last_hash,
            epoch: w.epoch,
            epoch_start: w.epoch_start,
            sealed_at: w.sealed_at,
            epoch_pub: parse_public(&w.epoch_pub).ok_or("epoch_pub is not a public key")?,
            epoch_cert: match w.epoch_cert {
                None => None,
                Some(c) => Some(parse_signature(&c).ok_or("epoch_cert is not a signature")?),
            },
            next_pub: parse_public(&w.next_pub).ok_or("next_pub is not a public key")?,
            sig: parse_signature(&w.sig).ok_or("sig is not a signature")?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_round_trip_and_any_change_breaks_the_signature() {
        let k = EpochKey::generate();
        let s = Seal::sign(&k, "n/s", 1, 10, [7; 32]);
        assert!(s.signature_ok());
        let back = Seal::from_event(&s.to_event()).unwrap().unwrap();
        assert_eq!(back, s);
        let mut t = s.clone();
        t.to = 11;
        assert!(!t.signature_ok());
        let mut t = s.clone();
        t.sealed_at = "2000-01-01T00:00:00Z".into();
        assert!(!t.signature_ok());
        let other = EpochKey::generate();
        let mut t = s.clone();
        t.epoch_pub = other.public();
        assert!(!t.signature_ok());
        assert_eq!(Seal::from_event(br#"{"event":"x"}"#).unwrap(), None);
        assert!(Seal::from_event(br#"{"event":"auditrail.seal"}"#).is_err());
    }

    #[test]
    fn the_public_key_alone_cannot_seal() {
        // A seal whose signature is made by anything but the epoch key fails, whatever the rest says.
        let k = EpochKey::generate();
        let mut s = Seal::sign(&k, "n/s", 1, 1, [0; 32]);
        let forger = EpochKey::generate();
        s.sig = forger.sign(&s.message());
        assert!(!s.signature_ok());
    }
}
