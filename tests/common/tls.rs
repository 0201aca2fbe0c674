//! Certificates for the encrypted-upstream tests, made by the real openssl
//! command: a CA, and server certificates it signs for the names and
//! addresses a test needs.

use std::path::PathBuf;
use std::process::Command;

use super::TempDir;

/// A throwaway certificate authority in its own directory.
pub struct TestCa {
    dir: TempDir,
    pub cert: PathBuf,
    key: PathBuf,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    pub fn new(tag: &str) -> TestCa {
        let dir = TempDir::new(&format!("ca-{tag}"));
        let cert = dir.path("ca.pem");
        let key = dir.path("ca.key");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=dae test CA {tag}"),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
        TestCa { dir, cert, key }
    }

    /// A server certificate and key (PEM files) for these subject
    /// alternative names (`DNS:name`, `IP:addr`).
    pub fn server(&self, name: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        let key = self.dir.path(&format!("{name}.key"));
        let csr = self.dir.path(&format!("{name}.csr"));
        let cert = self.dir.path(&format!("{name}.pem"));
        let ext = self.dir.path(&format!("{name}.ext"));
        std::fs::write(&ext, format!("subjectAltName={}\n", sans.join(","))).unwrap();
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            self.cert.to_str().unwrap(),
            "-CAkey",
            self.key.to_str().unwrap(),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
        (cert, key)
    }
}
