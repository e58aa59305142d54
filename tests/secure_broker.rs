//! Kafka over TLS and SASL against Apache Kafka's own listeners: one node for the tests of this file,
//! started by `scripts/kafka.sh` with `KAFKA_SECURITY=1`, which adds an SSL listener that requires a
//! client certificate and a SASL_SSL listener with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN, both with a
//! certificate from the authority the script makes (with a client certificate from the same authority).
//! Every connection a client makes goes to the listener it bootstrapped from, so through TLS.
//!
//! - `leadscore run` scores a stream, and the outputs and final states equal the offline model, over
//!   `sasl_ssl` with SCRAM-SHA-512 (the password read from a file), over `ssl` with a client certificate
//!   whose key is encrypted (the passphrase read from a file), and over `sasl_ssl` with PLAIN.
//! - SCRAM-SHA-256 authenticates too.
//! - A wrong password (SCRAM or PLAIN), an untrusted broker certificate, a missing client certificate
//!   and a client certificate from another authority each stop start-up with the client's reason.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use leadscore::config::Config;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::symm::Cipher;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};
use rdkafka::config::ClientConfig;

const PARTITIONS: u32 = 2;
const KEY_PASSPHRASE: &str = "client-key-passphrase";

/// The secured node: PLAIN user alice, SCRAM-SHA-512 user carol and SCRAM-SHA-256 user bob.
fn broker() -> &'static Kafka {
    static BROKER: OnceLock<Kafka> = OnceLock::new();
    BROKER.get_or_init(|| {
        Kafka::start_until_exit(&[
            ("KAFKA_SECURITY", "1"),
            ("KAFKA_PLAIN_USERS", "alice:alice-secret"),
            ("KAFKA_SCRAM_USERS", "carol:carol-secret:scram512,bob:bob-secret:scram256"),
        ])
    })
}

#[test]
fn scores_a_stream_over_sasl_ssl_with_scram_sha_512() {
    let pki = Pki::new();
    std::fs::write(pki.dir.path().join("kafka-password"), "carol-secret\n").unwrap_or_else(|err| panic!("{err}"));
    let security = sasl_ssl("scram-sha-512", "carol", "{ file = \"kafka-password\" }") + &pki.trust();
    let log = score_stream(&pki, "secure-scram512", "sasl_ssl", &security);
    assert!(!log.contains("carol-secret"), "the password stays out of the log");
}

#[test]
fn scores_a_stream_over_ssl_with_a_client_certificate_whose_key_is_encrypted() {
    let pki = Pki::new();
    let security = format!("security_protocol = \"ssl\"\n{}", pki.client_tls());
    let log = score_stream(&pki, "secure-mtls", "ssl", &security);
    assert!(!log.contains(KEY_PASSPHRASE), "the key's passphrase stays out of the log");
}

#[test]
fn scores_a_stream_over_sasl_ssl_with_plain() {
    let pki = Pki::new();
    let security = sasl_ssl("plain", "alice", "\"alice-secret\"") + &pki.trust();
    let log = score_stream(&pki, "secure-plain", "sasl_ssl", &security);
    assert!(!log.contains("alice-secret"), "the password stays out of the log");
}

#[test]
fn scram_sha_256_connects() {
    let pki = Pki::new();
    let names = Names::new("secure-scram256");
    let security = sasl_ssl("scram-sha-256", "bob", "\"bob-secret\"") + &pki.trust();
    let config = pki.write_config("scram256.toml", &names, &broker().listener("sasl_ssl"), &security);
    let output = leadscore(&["topics", "create", "--config"], &config);
    assert!(output.status.success(), "sasl_ssl with scram-sha-256: {}", output.stderr);
    assert!(output.stdout.contains("created"), "{}", output.stdout);
}

#[test]
fn a_wrong_password_or_certificate_stops_start_up_with_the_reason() {
    let pki = Pki::new();
    let names = Names::new("secure-refused");
    let scram = |password: &str| sasl_ssl("scram-sha-512", "carol", &format!("\"{password}\"")) + &pki.trust();
    let untrusted = Authority::new("untrusted");
    let untrusted_ca = pki.dir.path().join("untrusted-ca.pem");
    std::fs::write(&untrusted_ca, untrusted.certificate.to_pem().unwrap_or_default())
        .unwrap_or_else(|err| panic!("{err}"));
    // A client certificate the broker's authority did not sign, with an unencrypted key.
    let (intruder, intruder_key) = untrusted.issue("intruder");
    let (intruder_pem, intruder_key_pem) = (pki.dir.path().join("intruder.pem"), pki.dir.path().join("intruder.key"));
    std::fs::write(&intruder_pem, intruder.to_pem().unwrap_or_default()).unwrap_or_else(|err| panic!("{err}"));
    std::fs::write(&intruder_key_pem, intruder_key.private_key_to_pem_pkcs8().unwrap_or_default())
        .unwrap_or_else(|err| panic!("{err}"));
    let ssl = "security_protocol = \"ssl\"\n";
    let cases = [
        ("wrong-scram-password", "sasl_ssl", scram("not-carols"), "SASL authentication error"),
        (
            "wrong-plain-password",
            "sasl_ssl",
            sasl_ssl("plain", "alice", "\"not-alices\"") + &pki.trust(),
            "SASL authentication error",
        ),
        (
            "untrusted-broker",
            "sasl_ssl",
            scram("carol-secret").replace(&pki.authority.display().to_string(), &untrusted_ca.display().to_string()),
            "certificate verify failed",
        ),
        // Kafka's TLS (Java's) answers a missing client certificate with a bad_certificate alert.
        ("no-client-certificate", "ssl", format!("{ssl}{}", pki.trust()), "alert bad certificate"),
        (
            "untrusted-client-certificate",
            "ssl",
            format!(
                "{ssl}{}ssl_certificate_location = \"{}\"\nssl_key_location = \"{}\"\n",
                pki.trust(),
                intruder_pem.display(),
                intruder_key_pem.display()
            ),
            // librdkafka does not even send a certificate the broker's list of authorities does not name.
            "alert bad certificate",
        ),
    ];
    // Each command gives up after its 10 s metadata timeout, so the cases run side by side.
    let mut runs = Vec::new();
    for (name, listener, security, reason) in &cases {
        let config = pki.write_config(&format!("{name}.toml"), &names, &broker().listener(listener), security);
        // `leadscore run` checks the topics the same way first; it is tried with the wrong passwords.
        runs.push((*name, ["topics", "create"], config.clone(), *reason));
        if name.starts_with("wrong-") {
            runs.push((*name, ["run", ""], config, *reason));
        }
    }
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let running: Vec<_> = runs
            .iter()
            .map(|(_, command, config, _)| {
                let args: Vec<&str> =
                    command.iter().copied().filter(|arg| !arg.is_empty()).chain(["--config"]).collect();
                scope.spawn(move || leadscore(&args, config))
            })
            .collect();
        running.into_iter().map(|run| run.join().unwrap_or_else(|_| panic!("leadscore did not run"))).collect()
    });
    for ((name, command, _, reason), output) in runs.iter().zip(outputs) {
        assert!(!output.status.success(), "{name}: `leadscore {}` must fail", command[0]);
        assert!(
            output.stderr.contains(reason),
            "{name}: `leadscore {}` names {reason:?}: {}",
            command[0],
            output.stderr
        );
        assert!(!output.stderr.contains("carol-secret"), "{name}: the password stays out of the output");
        let error = output.stderr.lines().find(|line| line.starts_with("error: ")).unwrap_or_default();
        eprintln!("{name}, `leadscore {}`: {error}", command[0]);
    }
}

/// Scores a stream with `leadscore run` over `listener` with the `[kafka]` settings `security`, and
/// compares the outputs and final states with the offline model; returns the process's log.
fn score_stream(pki: &Pki, test: &str, listener: &str, security: &str) -> String {
    let names = Names::new(test);
    let config = pki.write_config("leadscore.toml", &names, &broker().listener(listener), security);
    let client = secured_client(&config);
    let output = leadscore(&["topics", "create", "--config"], &config);
    assert!(output.status.success(), "{test}: topics create: {}", output.stderr);
    assert!(output.stdout.contains("created"), "{test}: {}", output.stdout);
    let rules = rules();
    let events = stream(23, 3_000, 300);
    let model = model_of_events(&rules, PARTITIONS, &events);
    let expected = produce_with(client.clone(), &names.input, PARTITIONS, &events);

    let log = pki.dir.path().join("run.log");
    let mut run = spawn_run(&config, &log);
    wait_committed_with(client.clone(), &names.group, &names.input, &expected, Duration::from_secs(120));
    let published = read_all_with(client, &names.outputs(), Duration::from_secs(3));
    assert_eq!(run.terminate(Duration::from_secs(30)), Some(0), "{test}: leadscore stops cleanly");
    let duplicates = compare_outputs(&model, &published);
    compare_states(&model, &stored_states(&rules, &pki.state("leadscore.toml")));
    eprintln!("{test}: {} events, {} outputs ({duplicates} duplicates)", events.len(), published.len());
    std::fs::read_to_string(&log).unwrap_or_default()
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

/// A certificate authority other than the broker's: its key and self-signed certificate.
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

/// One test's files: the broker's authority and client certificate (made by `scripts/kafka.sh`), the
/// client key encrypted with [`KEY_PASSPHRASE`] and that passphrase in a file, the configs and the state.
struct Pki {
    dir: tempfile::TempDir,
    authority: PathBuf,
    client: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let tls = broker().dir.path().join("tls");
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
        let key = std::fs::read(tls.join("client.key")).unwrap_or_else(|err| panic!("{err}"));
        let key = PKey::private_key_from_pem(&key).unwrap_or_else(|err| panic!("{err}"));
        let encrypted = key
            .private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), KEY_PASSPHRASE.as_bytes())
            .unwrap_or_else(|err| panic!("{err}"));
        for (file, bytes) in
            [("client-key.pem", encrypted), ("client-key-passphrase", format!("{KEY_PASSPHRASE}\n").into_bytes())]
        {
            std::fs::write(dir.path().join(file), bytes).unwrap_or_else(|err| panic!("{err}"));
        }
        Pki { dir, authority: tls.join("ca.pem"), client: tls.join("client.pem") }
    }

    /// The state directory of the config in `file`.
    fn state(&self, file: &str) -> PathBuf {
        self.dir.path().join(file).with_extension("state")
    }

    /// The `[kafka]` setting that trusts the broker's authority.
    fn trust(&self) -> String {
        format!("ssl_ca_location = \"{}\"\n", self.authority.display())
    }

    /// [`Pki::trust`] and the client certificate, its key encrypted, the passphrase read from a file.
    fn client_tls(&self) -> String {
        format!(
            "{}ssl_certificate_location = \"{}\"\nssl_key_location = \"{}\"\n\
             ssl_key_password = {{ file = \"client-key-passphrase\" }}\n",
            self.trust(),
            self.client.display(),
            self.dir.path().join("client-key.pem").display(),
        )
    }

    /// Writes a `leadscore run` config with `security` added to its `[kafka]` table.
    fn write_config(&self, file: &str, names: &Names, bootstrap: &str, security: &str) -> PathBuf {
        let toml = names.config_toml(bootstrap, &self.state(file), PARTITIONS).replacen(
            "[kafka]\n",
            &format!("[kafka]\n{security}"),
            1,
        );
        let path = self.dir.path().join(file);
        std::fs::write(&path, toml).unwrap_or_else(|err| panic!("{err}"));
        path
    }
}
