//! Throwaway certificates for the TLS tests: a CA, a server certificate it signs for
//! `localhost` and `127.0.0.1`, a client certificate it signs, and a second CA with a
//! client certificate of its own (which a server trusting the first must refuse).
//! Made with `rcgen` at each test's start, written as PEM files; nothing is kept.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate authority able to sign certificates (rcgen's types have no `Debug`).
#[allow(missing_debug_implementations)]
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A certificate for `names`, for a server or a client; `(certificate, key)` PEM.
    fn sign(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The PEM files of one test.
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// `ca.pem`, `server.pem`/`server-key.pem` (localhost, 127.0.0.1), `client.pem`/
    /// `client-key.pem` (signed by the CA), `stranger.pem`/`stranger-key.pem` (signed by
    /// another CA, `other-ca.pem`), `self-signed.pem`/`self-signed-key.pem` (a CA
    /// certificate of its own, used as a client's, as in Python ZEO's tests).
    pub fn new(dir: &Path) -> Pki {
        let ca = Ca::new("bbru test CA");
        let other = Ca::new("someone else's CA");
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        write("ca.pem", &ca.cert.pem());
        write("other-ca.pem", &other.cert.pem());
        let (cert, key) = ca.sign(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        write("server.pem", &cert);
        write("server-key.pem", &key);
        let (cert, key) = ca.sign(&["zeo-client"], ExtendedKeyUsagePurpose::ClientAuth);
        write("client.pem", &cert);
        write("client-key.pem", &key);
        let (cert, key) = other.sign(&["stranger"], ExtendedKeyUsagePurpose::ClientAuth);
        write("stranger.pem", &cert);
        write("stranger-key.pem", &key);
        // As Python ZEO's test certificates: self-signed, a CA, an end's own.
        let own = Ca::new("zeo-self-signed");
        write("self-signed.pem", &own.cert.pem());
        write("self-signed-key.pem", &own.key.serialize_pem());
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn arg(&self, name: &str) -> String {
        self.path(name).to_str().expect("a UTF-8 path").to_string()
    }
}
