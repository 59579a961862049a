//! Trusted publishers: a component signed (Ed25519) by a key in `[agent] trusted_keys`
//! loads without a sha-256 pin. The signature is `<component>.sig` beside it: 64 bytes as
//! 128 hex digits, over the component's bytes.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

/// Largest signature file read.
const MAX_SIGNATURE_FILE_BYTES: u64 = 1024;

/// A public key from its 64 hex digits.
pub fn parse_key(hex_key: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .map_err(|e| format!("`{hex_key}` is not hex: {e}"))?
        .try_into()
        .map_err(|_| format!("`{hex_key}` is not a 32-byte Ed25519 public key"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("`{hex_key}`: {e}"))
}

/// Where the signature of `component` is looked for.
pub fn signature_path(component: &Path) -> PathBuf {
    let mut name = component
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".sig");
    component.with_file_name(name)
}

/// Why a signature did not make a component trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `<component>.sig` beside it.
    #[error("no signature ({} is missing)", .0.display())]
    Missing(PathBuf),
    /// The file is not a signature.
    #[error("{}: not a signature: {}", .0.display(), .1)]
    Malformed(PathBuf, String),
    /// No trusted key verifies it.
    #[error("the signature in {} is not by a trusted key, or the component was changed after signing", .0.display())]
    Untrusted(PathBuf),
}

/// Checks that `bytes` (the component at `component`) carry a signature by one of `keys`;
/// returns the index of the key that signed.
pub fn verify(
    component: &Path,
    bytes: &[u8],
    keys: &[VerifyingKey],
) -> Result<usize, SignatureError> {
    use std::io::Read as _;
    let path = signature_path(component);
    // Non-blocking: a FIFO in the signature's place must not hang the loader.
    let opened = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
    };
    let file = match opened {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => f,
        Ok(_) => {
            return Err(SignatureError::Malformed(path, "not a regular file".into()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SignatureError::Missing(path));
        }
        Err(e) => return Err(SignatureError::Malformed(path, e.to_string())),
    };
    let mut text = String::new();
    file.take(MAX_SIGNATURE_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| SignatureError::Malformed(path.clone(), e.to_string()))?;
    let raw: [u8; 64] = hex::decode(text.trim())
        .map_err(|e| SignatureError::Malformed(path.clone(), e.to_string()))?
        .try_into()
        .map_err(|_| SignatureError::Malformed(path.clone(), "not 64 bytes".into()))?;
    let signature = Signature::from_bytes(&raw);
    keys.iter()
        .position(|k| k.verify_strict(bytes, &signature).is_ok())
        .ok_or(SignatureError::Untrusted(path))
}

/// Signs `bytes` with the 32-byte secret key in hex; returns the signature in hex (what
/// `ward plugin sign` writes) and the public key in hex (what `trusted_keys` lists).
pub fn sign(secret_hex: &str, bytes: &[u8]) -> Result<(String, String), String> {
    let secret: [u8; 32] = hex::decode(secret_hex.trim())
        .map_err(|e| format!("the secret key is not hex: {e}"))?
        .try_into()
        .map_err(|_| "the secret key is not 32 bytes".to_owned())?;
    let key = SigningKey::from_bytes(&secret);
    Ok((
        hex::encode(key.sign(bytes).to_bytes()),
        hex::encode(key.verifying_key().to_bytes()),
    ))
}

/// A fresh secret key in hex (from the system's random source) and its public key.
pub fn generate() -> std::io::Result<(String, String)> {
    use std::io::Read as _;
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
    let key = SigningKey::from_bytes(&secret);
    Ok((
        hex::encode(secret),
        hex::encode(key.verifying_key().to_bytes()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_by_a_trusted_key_verifies_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let component = dir.path().join("p.wasm");
        std::fs::write(&component, b"component bytes").unwrap();
        let (secret, public) = generate().unwrap();
        let (_, other) = generate().unwrap();
        let keys = [parse_key(&other).unwrap(), parse_key(&public).unwrap()];
        assert!(matches!(
            verify(&component, b"component bytes", &keys),
            Err(SignatureError::Missing(_))
        ));
        let (sig, _) = sign(&secret, b"component bytes").unwrap();
        std::fs::write(signature_path(&component), &sig).unwrap();
        assert_eq!(verify(&component, b"component bytes", &keys), Ok(1));
        // Changed after signing, or signed by a key not trusted.
        assert!(matches!(
            verify(&component, b"component bytez", &keys),
            Err(SignatureError::Untrusted(_))
        ));
        assert!(matches!(
            verify(&component, b"component bytes", &keys[..1]),
            Err(SignatureError::Untrusted(_))
        ));
        std::fs::write(signature_path(&component), "zz").unwrap();
        assert!(matches!(
            verify(&component, b"component bytes", &keys),
            Err(SignatureError::Malformed(..))
        ));
        assert!(parse_key("abcd").is_err());
    }
}
