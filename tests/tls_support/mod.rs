//! Certificates made for the TLS tests (rcgen): a CA, a consumer certificate for `localhost` and
//! 127.0.0.1, a producer (client) certificate, and a second CA nobody trusts, written as PEM files
//! into a fresh directory.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The PEM files of one test's certificates.
#[derive(Debug)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// Makes every certificate in a directory of its own named after `test`.
    pub fn new(test: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("framepipe-tls-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let trusted = ca("framepipe test CA");
        write(&dir, "ca.pem", &trusted.pem());
        let (cert, key) = leaf(&trusted, "consumer", &["localhost", "127.0.0.1"], false);
        write(&dir, "consumer.pem", &cert);
        write(&dir, "consumer.key", &key);
        let (cert, key) = leaf(&trusted, "producer-1", &["producer-1.example"], true);
        write(&dir, "producer.pem", &cert);
        write(&dir, "producer.key", &key);
        let other = ca("a CA nobody trusts");
        write(&dir, "other-ca.pem", &other.pem());
        let (cert, key) = leaf(&other, "intruder", &["intruder.example"], true);
        write(&dir, "intruder.pem", &cert);
        write(&dir, "intruder.key", &key);
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(dir: &Path, name: &str, pem: &str) {
    std::fs::write(dir.join(name), pem).unwrap();
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `names` signed by `ca`, and its key, as PEM.
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    names: &[&str],
    client: bool,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}
