//! Kafka over TLS and SASL against a real broker. tansu (0.6.0) checks SASL itself, with SCRAM users kept
//! in its sqlite store, but serves plain TCP even when given a certificate; so TLS is terminated by a
//! proxy this test runs in front of it, the way a TLS-terminating load balancer would, with certificates
//! from a certificate authority made here. The broker advertises the proxy's address, so every
//! connection a client makes goes through TLS.
//!
//! - `leadscore run` scores a stream over `sasl_ssl` with SCRAM-SHA-512 and a client certificate whose
//!   key is encrypted, with the password and the key's passphrase read from files, and the outputs and
//!   final states equal the offline model.
//! - SCRAM-SHA-256 authenticates too, and `ssl` alone works with a client certificate. (tansu 0.6.0
//!   offers SCRAM and OAUTHBEARER only, so PLAIN is checked as configuration in `tests/security.rs`.)
//! - A wrong password, an untrusted broker certificate and a missing client certificate each stop
//!   start-up with the client's reason.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

mod common;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::time::Duration;

use common::*;
use leadscore::config::Config;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{Ssl, SslAcceptor, SslMethod, SslVerifyMode};
use openssl::symm::Cipher;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};
use rdkafka::config::ClientConfig;

const PARTITIONS: u32 = 2;
const KEY_PASSPHRASE: &str = "client-key-passphrase";

#[test]
fn scores_a_stream_over_sasl_ssl_with_scram_and_a_client_certificate() {
    let (pki, broker, names, state) = secured("secure", ("alice", "alice-secret", "scram512"), true);
    std::fs::write(pki.dir.path().join("kafka-password"), "alice-secret\n").unwrap_or_else(|err| panic!("{err}"));
    let security = sasl_ssl("scram-sha-512", "alice", "{ file = \"kafka-password\" }") + &pki.client_tls(true);
    let config = pki.write_config("leadscore.toml", &names, &broker.bootstrap, &state, &security);
    let client = secured_client(&config);

    let output = leadscore(&["topics", "create", "--config"], &config);
    assert!(output.status.success(), "topics create over sasl_ssl: {}", output.stderr);
    let rules = rules();
    let events = stream(23, 3_000, 300);
    let model = model_of_events(&rules, PARTITIONS, &events);
    let expected = produce_with(client.clone(), &names.input, PARTITIONS, &events);

    let log = pki.dir.path().join("run.log");
    let mut run = spawn_run(&config, &log);
    wait_committed_with(client.clone(), &names.group, &names.input, &expected, Duration::from_secs(120));
    let published = read_all_with(client, &names.outputs(), Duration::from_secs(3));
    assert_eq!(run.terminate(Duration::from_secs(30)), Some(0), "leadscore stops cleanly");
    let duplicates = compare_outputs(&model, &published);
    compare_states(&model, &stored_states(&rules, &state));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("alice-secret") && !text.contains(KEY_PASSPHRASE), "secrets stay out of the log");
    assert!(broker.tls_connections() > 0, "the clients went through TLS");
    eprintln!(
        "sasl_ssl/scram-sha-512: {} events, {} outputs ({duplicates} duplicates), {} TLS connections",
        events.len(),
        published.len(),
        broker.tls_connections()
    );
}

#[test]
fn scram_sha_256_and_ssl_alone_connect() {
    let (pki, broker, names, state) = secured("secure-mechanisms", ("bob", "bob-secret", "scram256"), false);
    let security = sasl_ssl("scram-sha-256", "bob", "\"bob-secret\"") + &pki.client_tls(false);
    let config = pki.write_config("scram256.toml", &names, &broker.bootstrap, &state, &security);
    let output = leadscore(&["topics", "create", "--config"], &config);
    assert!(output.status.success(), "sasl_ssl with scram-sha-256: {}", output.stderr);
    assert!(output.stdout.contains("created"), "{}", output.stdout);

    // `ssl` alone, on a broker without SASL behind a proxy that requires client certificates.
    let unauthenticated = SecuredBroker::start(&pki, None, true);
    let security = format!("security_protocol = \"ssl\"\n{}", pki.client_tls(true));
    let config = pki.write_config("ssl.toml", &names, &unauthenticated.bootstrap, &state, &security);
    let output = leadscore(&["topics", "create", "--config"], &config);
    assert!(output.status.success(), "ssl with a client certificate: {}", output.stderr);
    assert!(output.stdout.contains("created"), "{}", output.stdout);
    assert!(unauthenticated.tls_connections() > 0, "the client went through TLS");
}

#[test]
fn a_wrong_password_or_certificate_stops_start_up_with_the_reason() {
    let (pki, broker, names, state) = secured("secure-refused", ("carol", "carol-secret", "scram512"), true);
    let scram = |password: &str| sasl_ssl("scram-sha-512", "carol", &format!("\"{password}\""));
    let untrusted_ca = pki.dir.path().join("untrusted-ca.pem");
    std::fs::write(&untrusted_ca, Authority::new("untrusted").certificate.to_pem().unwrap_or_default())
        .unwrap_or_else(|err| panic!("{err}"));
    let cases = [
        ("wrong-password", format!("{}{}", scram("not-carols"), pki.client_tls(true)), "SASL authentication error"),
        (
            "untrusted-broker",
            format!("{}{}", scram("carol-secret"), pki.client_tls(true))
                .replace(&pki.authority_pem().display().to_string(), &untrusted_ca.display().to_string()),
            "certificate verify failed",
        ),
        (
            "no-client-certificate",
            format!("{}{}", scram("carol-secret"), pki.client_tls(false)),
            "certificate required",
        ),
    ];
    for (name, security, reason) in cases {
        let config = pki.write_config(&format!("{name}.toml"), &names, &broker.bootstrap, &state, &security);
        // `leadscore run` checks the topics the same way first; it is tried with the wrong password.
        let commands: &[&[&str]] = if name == "wrong-password" {
            &[&["topics", "create", "--config"], &["run", "--config"]]
        } else {
            &[&["topics", "create", "--config"]]
        };
        for command in commands {
            let output = leadscore(command, &config);
            assert!(!output.status.success(), "{name}: `leadscore {}` must fail", command[0]);
            assert!(
                output.stderr.contains(reason),
                "{name}: `leadscore {}` names {reason:?}: {}",
                command[0],
                output.stderr
            );
            assert!(!output.stderr.contains("carol-secret"), "{name}: the password stays out of the output");
        }
    }
}

/// Certificates, a broker requiring SASL with one SCRAM `user`, topic names and a state directory.
fn secured(test: &str, user: (&str, &str, &str), client_certificates: bool) -> (Pki, SecuredBroker, Names, PathBuf) {
    let pki = Pki::new();
    let broker = SecuredBroker::start(&pki, Some(&[user]), client_certificates);
    let state = pki.dir.path().join("state");
    (pki, broker, Names::new(test), state)
}

/// The `[kafka]` SASL settings over TLS; `password` is a TOML value (a string or a secret source).
fn sasl_ssl(mechanism: &str, user: &str, password: &str) -> String {
    format!(
        "security_protocol = \"sasl_ssl\"\nsasl_mechanism = \"{mechanism}\"\nsasl_username = \"{user}\"\n\
         sasl_password = {password}\n"
    )
}

/// What a finished `leadscore` command printed.
struct Output {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

fn leadscore(args: &[&str], config: &Path) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(args)
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|err| panic!("cannot run leadscore: {err}"));
    Output {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A client for the test itself, secured like leadscore from the same config.
fn secured_client(config: &Path) -> ClientConfig {
    let config = Config::load(config).unwrap_or_else(|err| panic!("{err}"));
    let mut client = ClientConfig::new();
    for (key, value) in config.kafka.client_config() {
        client.set(key, value);
    }
    client.set("fetch.wait.max.ms", "10");
    client
}

/// A certificate authority: its key and self-signed certificate.
struct Authority {
    key: PKey<Private>,
    certificate: X509,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let key = new_key();
        let certificate = sign(name, &key, None, true);
        Authority { key, certificate }
    }

    /// A certificate for 127.0.0.1 and localhost, with its key.
    fn issue(&self, name: &str) -> (X509, PKey<Private>) {
        let key = new_key();
        (sign(name, &key, Some(self), false), key)
    }
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap_or_else(|err| panic!("{err}"));
    let key = EcKey::generate(&group).unwrap_or_else(|err| panic!("{err}"));
    PKey::from_ec_key(key).unwrap_or_else(|err| panic!("{err}"))
}

fn sign(name: &str, key: &PKey<Private>, issuer: Option<&Authority>, authority: bool) -> X509 {
    let built = (|| -> Result<X509, openssl::error::ErrorStack> {
        let mut subject = X509NameBuilder::new()?;
        subject.append_entry_by_nid(Nid::COMMONNAME, name)?;
        let subject = subject.build();
        let mut serial = BigNum::new()?;
        serial.rand(64, MsbOption::MAYBE_ZERO, false)?;
        let mut builder = X509::builder()?;
        builder.set_version(2)?;
        let serial = serial.to_asn1_integer()?;
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&subject)?;
        builder.set_issuer_name(issuer.map_or(&*subject, |issuer| issuer.certificate.subject_name()))?;
        builder.set_pubkey(key)?;
        let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(2)?);
        builder.set_not_before(&not_before)?;
        builder.set_not_after(&not_after)?;
        if authority {
            builder.append_extension(BasicConstraints::new().critical().ca().build()?)?;
            builder.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
        } else {
            let names = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .dns("localhost")
                .build(&builder.x509v3_context(issuer.map(|issuer| &*issuer.certificate), None))?;
            builder.append_extension(names)?;
        }
        builder.sign(issuer.map_or(key, |issuer| &issuer.key), MessageDigest::sha256())?;
        Ok(builder.build())
    })();
    built.unwrap_or_else(|err| panic!("cannot make a certificate for {name}: {err}"))
}

/// The test's certificates, as PEM files in a temporary directory, which also holds the configs.
struct Pki {
    dir: tempfile::TempDir,
    authority: Authority,
    server: (X509, PKey<Private>),
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
        let authority = Authority::new("leadscore test authority");
        let server = authority.issue("broker");
        let (client, client_key) = authority.issue("leadscore");
        let pem = |certificate: &X509| certificate.to_pem().unwrap_or_else(|err| panic!("{err}"));
        let encrypted = client_key
            .private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), KEY_PASSPHRASE.as_bytes())
            .unwrap_or_else(|err| panic!("{err}"));
        for (file, bytes) in [
            ("ca.pem", pem(&authority.certificate)),
            ("client.pem", pem(&client)),
            ("client-key.pem", encrypted),
            ("client-key-passphrase", format!("{KEY_PASSPHRASE}\n").into_bytes()),
        ] {
            std::fs::write(dir.path().join(file), bytes).unwrap_or_else(|err| panic!("{err}"));
        }
        Pki { dir, authority, server }
    }

    fn authority_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The `[kafka]` TLS settings: trust the authority, and present the client certificate when asked.
    fn client_tls(&self, with_certificate: bool) -> String {
        let mut tls = format!("ssl_ca_location = \"{}\"\n", self.authority_pem().display());
        if with_certificate {
            tls += &format!(
                "ssl_certificate_location = \"{}\"\nssl_key_location = \"{}\"\n\
                 ssl_key_password = {{ file = \"client-key-passphrase\" }}\n",
                self.dir.path().join("client.pem").display(),
                self.dir.path().join("client-key.pem").display(),
            );
        }
        tls
    }

    /// Writes a `leadscore run` config with `security` added to its `[kafka]` table.
    fn write_config(&self, file: &str, names: &Names, bootstrap: &str, state: &Path, security: &str) -> PathBuf {
        let toml =
            names.config_toml(bootstrap, state, PARTITIONS).replacen("[kafka]\n", &format!("[kafka]\n{security}"), 1);
        let path = self.dir.path().join(file);
        std::fs::write(&path, toml).unwrap_or_else(|err| panic!("{err}"));
        path
    }

    fn acceptor(&self, require_client_certificate: bool) -> SslAcceptor {
        let built = (|| -> Result<SslAcceptor, openssl::error::ErrorStack> {
            let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
            builder.set_certificate(&self.server.0)?;
            builder.set_private_key(&self.server.1)?;
            if require_client_certificate {
                builder.cert_store_mut().add_cert(self.authority.certificate.clone())?;
                builder.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
            }
            Ok(builder.build())
        })();
        built.unwrap_or_else(|err| panic!("{err}"))
    }
}

/// tansu behind a TLS-terminating proxy; with `users`, SASL is required and those SCRAM users exist.
/// Dropping it stops the proxy (its runtime) and tansu.
struct SecuredBroker {
    _tansu: Tansu,
    _proxy: tokio::runtime::Runtime,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    bootstrap: String,
}

impl SecuredBroker {
    fn start(pki: &Pki, users: Option<&[(&str, &str, &str)]>, require_client_certificate: bool) -> SecuredBroker {
        let tansu = Tansu::start_with(&[("TANSU_STORAGE", "sqlite")]);
        // Users are created through the broker before it requires authentication, which they then pass.
        for (name, password, mechanism) in users.unwrap_or_default() {
            let status = Command::new(manifest("scripts/tansu.sh"))
                .args(["user"])
                .arg(tansu.dir.path())
                .args([name, password, mechanism])
                .status()
                .unwrap_or_else(|err| panic!("{err}"));
            assert!(status.success(), "tansu did not create user {name}");
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|err| panic!("{err}"));
        let bootstrap = listener.local_addr().map(|address| address.to_string()).unwrap_or_else(|err| panic!("{err}"));
        tansu.stop();
        let authentication = if users.is_some() { "1" } else { "0" };
        tansu.restart_with(&[("TANSU_AUTHENTICATION", authentication), ("TANSU_ADVERTISED", &bootstrap)]);
        let proxy = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("{err}"));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let acceptor = pki.acceptor(require_client_certificate);
        let backend = tansu.bootstrap.clone();
        let counter = connections.clone();
        proxy.spawn(async move {
            listener.set_nonblocking(true).unwrap_or_else(|err| panic!("{err}"));
            let listener = tokio::net::TcpListener::from_std(listener).unwrap_or_else(|err| panic!("{err}"));
            while let Ok((client, _)) = listener.accept().await {
                let Ok(ssl) = Ssl::new(acceptor.context()) else { continue };
                let backend = backend.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = tokio_openssl::SslStream::new(ssl, client) else { return };
                    if Pin::new(&mut tls).accept().await.is_err() {
                        return;
                    }
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let Ok(mut broker) = tokio::net::TcpStream::connect(&backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                    }
                });
            }
        });
        SecuredBroker { _tansu: tansu, _proxy: proxy, connections, bootstrap }
    }

    /// TLS handshakes the proxy completed.
    fn tls_connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::Relaxed)
    }
}
