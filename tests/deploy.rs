//! The deployment files under deploy/, checked without Docker or a cluster (neither is on these
//! machines): the compose stack, the image's Dockerfile and the Kubernetes manifests parse, reference
//! files that exist, agree with each other, and carry configurations that `leadscore run` would accept.

#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::manifest;
use leadscore::config::Config;
use leadscore::rules::Rules;
use serde::Deserialize;
use serde_yaml_ng::Value;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Every document of a YAML file.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap_or_else(|err| panic!("{}: {err}", path.display())))
        .filter(|document| !document.is_null())
        .collect()
}

fn yaml(path: &Path) -> Value {
    let mut documents = yaml_documents(path);
    assert_eq!(documents.len(), 1, "{} should hold one document", path.display());
    documents.remove(0)
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("expected a string, got {value:?}"))
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items.iter().map(|item| text(item).to_owned()).collect(),
        Value::String(single) => single.split_whitespace().map(str::to_owned).collect(),
        Value::Null => Vec::new(),
        other => panic!("expected a list of strings, got {other:?}"),
    }
}

/// Files copied or mounted into a container: (path on this machine, path in the container).
type Mounts = Vec<(PathBuf, PathBuf)>;

/// The file on this machine behind a path in the container, through the mount that covers it.
fn host_path(mounts: &Mounts, inside: &Path) -> Option<PathBuf> {
    let covering = mounts.iter().find_map(|(host, target)| Some((host, inside.strip_prefix(target).ok()?)));
    covering.map(|(host, rest)| if rest.as_os_str().is_empty() { host.clone() } else { host.join(rest) })
}

/// Loads a config the way a container sees it: the file behind `config_inside`, with the container's
/// environment, then checks that its rules file is mounted too and passes `leadscore check`. Returns
/// the config with paths as the container sees them.
fn load_in_container(mounts: &Mounts, config_inside: &Path, env: &[(String, String)]) -> Config {
    let host_config = host_path(mounts, config_inside)
        .unwrap_or_else(|| panic!("{} is not mounted into the container", config_inside.display()));
    let mut config = Config::load_with_env(&host_config, env).unwrap_or_else(|err| panic!("{err}"));
    let host_dir = host_config.parent().unwrap_or(Path::new(""));
    let inside_dir = config_inside.parent().unwrap_or(Path::new("/"));
    let inside = |path: &Path| match path.strip_prefix(host_dir) {
        Ok(relative) => inside_dir.join(relative),
        Err(_) => path.to_owned(),
    };
    config.rules.path = inside(&config.rules.path);
    config.state.dir = inside(&config.state.dir);

    let host_rules = host_path(mounts, &config.rules.path)
        .unwrap_or_else(|| panic!("the rules file {} is not in the container", config.rules.path.display()));
    Rules::load(&host_rules).unwrap_or_else(|err| panic!("{err}"));
    let check = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .arg("check")
        .arg(&host_rules)
        .output()
        .unwrap_or_else(|err| panic!("cannot run leadscore check: {err}"));
    assert!(
        check.status.success(),
        "leadscore check {}: {}",
        host_rules.display(),
        String::from_utf8_lossy(&check.stderr)
    );
    config
}

fn deploy() -> PathBuf {
    manifest("deploy")
}

// ---- compose ----------------------------------------------------------------------------------------

/// The host side of `ports:` entries ("9090:9090", "127.0.0.1:9090:9090", or the long syntax).
fn published_ports(service: &Value) -> Vec<(u16, u16)> {
    let Value::Sequence(ports) = &service["ports"] else { return Vec::new() };
    ports
        .iter()
        .map(|port| match port {
            Value::String(short) => {
                let parts: Vec<&str> = short.split('/').next().unwrap_or_default().rsplitn(3, ':').collect();
                assert!(parts.len() >= 2, "port {short} publishes no host port");
                let parse = |part: &str| part.parse().unwrap_or_else(|err| panic!("port {short}: {err}"));
                (parse(parts[1]), parse(parts[0]))
            }
            long => {
                let number = |value: &Value| match value {
                    Value::Number(number) => number.as_u64().unwrap_or_default() as u16,
                    Value::String(text) => text.parse().unwrap_or_else(|err| panic!("{text}: {err}")),
                    other => panic!("port {other:?}"),
                };
                (number(&long["published"]), number(&long["target"]))
            }
        })
        .collect()
}

/// Bind mounts of a service (relative to deploy/), and the named volumes it uses.
fn compose_mounts(service: &Value) -> (Mounts, Vec<(String, PathBuf)>) {
    let (mut binds, mut named) = (Vec::new(), Vec::new());
    let Value::Sequence(volumes) = &service["volumes"] else { return (binds, named) };
    for volume in volumes {
        let short = text(volume);
        let parts: Vec<&str> = short.split(':').collect();
        assert!((2..=3).contains(&parts.len()), "volume {short} is not source:target[:mode]");
        if parts[0].starts_with('.') || parts[0].starts_with('/') {
            binds.push((deploy().join(parts[0]), PathBuf::from(parts[1])));
        } else {
            named.push((parts[0].to_owned(), PathBuf::from(parts[1])));
        }
    }
    (binds, named)
}

fn service_env(service: &Value) -> Vec<(String, String)> {
    match &service["environment"] {
        Value::Mapping(map) => map
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::String(text) => text.clone(),
                    other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_owned(),
                };
                (text(key).to_owned(), value)
            })
            .collect(),
        Value::Null => Vec::new(),
        other => panic!("environment as a list is not used here: {other:?}"),
    }
}

#[test]
fn the_compose_stack_is_complete_and_consistent() {
    let compose = yaml(&deploy().join("compose.yaml"));
    let Value::Mapping(services) = &compose["services"] else { panic!("compose.yaml has no services") };
    let names: BTreeSet<&str> = services.keys().map(text).collect();
    for expected in ["kafka", "topics", "leadscore", "generator", "prometheus", "grafana"] {
        assert!(names.contains(expected), "compose.yaml has no {expected} service");
    }
    let declared_volumes: BTreeSet<&str> = match &compose["volumes"] {
        Value::Mapping(volumes) => volumes.keys().map(text).collect(),
        _ => BTreeSet::new(),
    };

    let mut host_ports: BTreeMap<u16, &str> = BTreeMap::new();
    for (name, service) in services {
        let name = text(name);
        assert!(
            !service["image"].is_null() || !service["build"].is_null(),
            "service {name} has neither image nor build"
        );
        if let Value::Mapping(build) = &service["build"] {
            let context = deploy().join(text(&build[&Value::from("context")]));
            assert!(context.is_dir(), "{name}: build context {} is not a directory", context.display());
            let dockerfile = context.join(text(&build[&Value::from("dockerfile")]));
            assert!(dockerfile.is_file(), "{name}: {} does not exist", dockerfile.display());
        }
        for (host, _) in published_ports(service) {
            if let Some(other) = host_ports.insert(host, name) {
                panic!("host port {host} is published by both {other} and {name}");
            }
        }
        let (binds, named) = compose_mounts(service);
        for (host, _) in &binds {
            assert!(host.exists(), "{name} mounts {}, which is not in the repository", host.display());
        }
        for (volume, _) in &named {
            assert!(declared_volumes.contains(volume.as_str()), "{name} uses undeclared volume {volume}");
        }
        match &service["depends_on"] {
            Value::Mapping(map) => map.keys().map(text).for_each(|dependency| {
                assert!(names.contains(dependency), "{name} depends on unknown service {dependency}")
            }),
            Value::Sequence(list) => list.iter().map(text).for_each(|dependency| {
                assert!(names.contains(dependency), "{name} depends on unknown service {dependency}")
            }),
            _ => {}
        }
    }

    assert!(text(&services["kafka"]["image"]).starts_with("apache/kafka:"), "Kafka is the official image");
    let kafka_env: BTreeMap<String, String> = service_env(&services["kafka"]).into_iter().collect();
    assert_eq!(kafka_env.get("KAFKA_PROCESS_ROLES").map(String::as_str), Some("broker,controller"), "KRaft mode");

    // leadscore's config loads as the container sees it, and everything else agrees with it.
    let leadscore = &services["leadscore"];
    let command = strings(&leadscore["command"]);
    assert_eq!(&command[..2], ["run", "--config"], "{command:?}");
    let config_inside = PathBuf::from(&command[2]);
    let (binds, named) = compose_mounts(leadscore);
    let config = load_in_container(&binds, &config_inside, &service_env(leadscore));
    assert!(
        named.iter().any(|(_, target)| *target == config.state.dir),
        "state.dir {} is not on a volume",
        config.state.dir.display()
    );
    assert!(config.http.listen.ip().is_unspecified(), "http.listen must be reachable from other containers");
    let port = config.http.listen.port();
    assert!(published_ports(leadscore).iter().any(|(_, target)| *target == port), "port {port} is not published");
    let (kafka_host, kafka_port) = config.kafka.brokers.split_once(':').unwrap_or_else(|| panic!("brokers"));
    assert_eq!(kafka_host, "kafka");
    let listeners = kafka_env.get("KAFKA_ADVERTISED_LISTENERS").cloned().unwrap_or_default();
    assert!(listeners.contains(&format!("://kafka:{kafka_port}")), "Kafka does not advertise kafka:{kafka_port}");

    let topics = &services["topics"];
    let topics_command = strings(&topics["command"]);
    assert_eq!(topics_command, ["topics", "create", "--config", &command[2]]);
    assert_eq!(compose_mounts(topics).0, binds, "the topics job must see leadscore's config");
    let condition = |service: &str| text(&services[service]["depends_on"]["topics"]["condition"]).to_owned();
    assert_eq!(condition("leadscore"), "service_completed_successfully");
    assert_eq!(condition("generator"), "service_completed_successfully");

    let generator = strings(&services["generator"]["command"]);
    assert_eq!(generator[0], "generate");
    let flag = |name: &str| {
        let at = generator.iter().position(|arg| arg == name).unwrap_or_else(|| panic!("generator has no {name}"));
        generator[at + 1].clone()
    };
    assert_eq!(flag("--brokers"), config.kafka.brokers);
    assert_eq!(flag("--topic"), config.topics.inputs[0]);

    // Prometheus scrapes leadscore and loads the alert rules from where they are mounted.
    let (prometheus_mounts, _) = compose_mounts(&services["prometheus"]);
    let prometheus_yml = Path::new("/etc/prometheus/prometheus.yml");
    let prometheus = yaml(&host_path(&prometheus_mounts, prometheus_yml).unwrap_or_else(|| panic!("prometheus.yml")));
    for rule_file in strings(&prometheus["rule_files"]) {
        let inside = Path::new("/etc/prometheus").join(rule_file);
        let host = host_path(&prometheus_mounts, &inside).unwrap_or_else(|| panic!("{} not mounted", inside.display()));
        let rules = yaml(&host);
        assert!(rules["groups"].as_sequence().is_some_and(|groups| !groups.is_empty()), "{}", host.display());
    }
    let targets: Vec<String> = prometheus["scrape_configs"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|job| job["static_configs"].as_sequence().into_iter().flatten())
        .flat_map(|group| strings(&group["targets"]))
        .collect();
    assert!(targets.contains(&format!("leadscore:{port}")), "Prometheus does not scrape leadscore:{port}: {targets:?}");
    assert!(strings(&prometheus["rule_files"]).contains(&"alerts.yaml".to_owned()));

    // Grafana: Prometheus as data source, and the dashboard where the provider looks.
    let (grafana_mounts, _) = compose_mounts(&services["grafana"]);
    let provisioning = Path::new("/etc/grafana/provisioning");
    let datasources = yaml(
        &host_path(&grafana_mounts, &provisioning.join("datasources/prometheus.yaml"))
            .unwrap_or_else(|| panic!("grafana datasources not mounted")),
    );
    let source = &datasources["datasources"][0];
    assert_eq!(text(&source["type"]), "prometheus");
    let (_, prometheus_port) = published_ports(&services["prometheus"])[0];
    assert_eq!(text(&source["url"]), format!("http://prometheus:{prometheus_port}"));
    let provider = yaml(
        &host_path(&grafana_mounts, &provisioning.join("dashboards/leadscore.yaml"))
            .unwrap_or_else(|| panic!("grafana dashboard provider not mounted")),
    );
    let dashboards = Path::new(text(&provider["providers"][0]["options"]["path"])).join("leadscore.json");
    let dashboard = host_path(&grafana_mounts, &dashboards).unwrap_or_else(|| panic!("{dashboards:?} not mounted"));
    assert_eq!(dashboard, deploy().join("./grafana/leadscore.json"));
    let json: serde_json::Value = serde_json::from_str(&read(&dashboard)).unwrap_or_else(|err| panic!("{err}"));
    assert!(json["panels"].is_array(), "{} is not a Grafana dashboard", dashboard.display());
}

// ---- Dockerfile ---------------------------------------------------------------------------------------

#[test]
fn the_dockerfile_runs_as_non_root_with_a_state_volume_and_a_health_check() {
    let dockerfile = read(&deploy().join("Dockerfile"));
    let instructions: Vec<(String, String)> = dockerfile
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
            (instruction.to_uppercase(), rest.trim().to_owned())
        })
        .collect();
    fn all<'a>(instructions: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> + Clone {
        instructions.iter().filter(move |(i, _)| i == name).map(|(_, rest)| rest.as_str())
    }
    let all = |name: &'static str| all(&instructions, name);
    let stages: Vec<&str> = all("FROM").collect();
    assert_eq!(stages.len(), 2, "a builder and a runtime stage: {stages:?}");
    assert!(stages[0].starts_with("rust:1.95"), "{stages:?}");
    assert!(stages[1].starts_with("debian:") && stages[1].contains("slim"), "{stages:?}");

    // Files copied from the build context exist; the runtime's config and rules are among them.
    let mut copied: Mounts = Vec::new();
    for copy in all("COPY").filter(|copy| !copy.starts_with("--from")) {
        let parts: Vec<&str> = copy.split_whitespace().collect();
        if parts == [".", "."] {
            continue;
        }
        assert_eq!(parts.len(), 2, "COPY {copy}");
        let source = manifest(parts[0]);
        assert!(source.exists(), "COPY {copy}: {} does not exist", source.display());
        copied.push((source, PathBuf::from(parts[1])));
    }
    let entrypoint: Vec<String> = serde_json::from_str(all("ENTRYPOINT").last().unwrap_or_default())
        .unwrap_or_else(|err| panic!("ENTRYPOINT: {err}"));
    let command: Vec<String> =
        serde_json::from_str(all("CMD").last().unwrap_or_default()).unwrap_or_else(|err| panic!("CMD: {err}"));
    assert_eq!(entrypoint, ["/usr/local/bin/leadscore"]);
    assert_eq!(&command[..2], ["run", "--config"]);
    let config = load_in_container(&copied, Path::new(&command[2]), &[]);

    let user = all("USER").last().unwrap_or_default();
    assert!(!user.is_empty() && !user.starts_with("root") && !user.starts_with("0"), "USER {user}");
    assert_eq!(all("VOLUME").last(), Some(config.state.dir.to_str().unwrap_or_default()));
    let health = all("HEALTHCHECK").last().unwrap_or_else(|| panic!("no HEALTHCHECK"));
    let url = format!("http://127.0.0.1:{}/healthz", config.http.listen.port());
    assert!(health.contains(&url), "HEALTHCHECK should ask {url}: {health}");
    assert!(config.http.listen.ip().is_unspecified(), "the image's API must be reachable from outside");
    assert!(all("EXPOSE").any(|port| port == config.http.listen.port().to_string()));
}

// ---- Kubernetes -----------------------------------------------------------------------------------------

fn k8s() -> PathBuf {
    deploy().join("k8s")
}

/// Every object of the kustomization's resources, which must be every manifest in deploy/k8s.
fn k8s_objects() -> Vec<Value> {
    let kustomization = yaml(&k8s().join("kustomization.yaml"));
    assert_eq!(text(&kustomization["kind"]), "Kustomization");
    let listed: BTreeSet<String> = strings(&kustomization["resources"]).into_iter().collect();
    let present: BTreeSet<String> = std::fs::read_dir(k8s())
        .unwrap_or_else(|err| panic!("{err}"))
        .map(|entry| entry.unwrap_or_else(|err| panic!("{err}")).file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present, "kustomization.yaml must list every manifest");
    listed.iter().flat_map(|file| yaml_documents(&k8s().join(file))).collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|object| object["kind"].as_str() == Some(kind)).collect()
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(objects, kind);
    assert_eq!(found.len(), 1, "expected one {kind}");
    found[0]
}

/// Whether a selector's labels all appear among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let Value::Mapping(selector) = selector else { return false };
    !selector.is_empty() && selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

#[test]
fn the_kubernetes_manifests_are_complete_and_consistent() {
    let objects = k8s_objects();
    for object in &objects {
        for field in ["apiVersion", "kind"] {
            assert!(object[field].is_string(), "an object has no {field}: {object:?}");
        }
        assert!(object["metadata"]["name"].is_string(), "an object has no name: {object:?}");
    }
    let statefulset = one(&objects, "StatefulSet");
    let config_map = one(&objects, "ConfigMap");
    let secret = one(&objects, "Secret");
    let pdb = one(&objects, "PodDisruptionBudget");
    let monitor = one(&objects, "ServiceMonitor");
    let services = of_kind(&objects, "Service");
    assert_eq!(services.len(), 2, "a headless Service and one for the API and metrics");

    let spec = &statefulset["spec"];
    let pod = &spec["template"]["spec"];
    let pod_labels = &spec["template"]["metadata"]["labels"];
    assert!(selects(&spec["selector"]["matchLabels"], pod_labels), "the StatefulSet does not select its pods");
    let headless: Vec<&&Value> = services.iter().filter(|service| service["spec"]["clusterIP"] == "None").collect();
    assert_eq!(headless.len(), 1, "one headless Service");
    assert_eq!(spec["serviceName"], headless[0]["metadata"]["name"], "serviceName names the headless Service");
    let api = services.iter().find(|service| service["spec"]["clusterIP"] != "None").unwrap_or_else(|| panic!("api"));

    let containers = pod["containers"].as_sequence().unwrap_or_else(|| panic!("no containers"));
    let container = &containers[0];
    let port_named = |name: &Value| -> u64 {
        match name {
            Value::Number(number) => number.as_u64().unwrap_or_default(),
            name => container["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|port| port["name"] == *name)
                .and_then(|port| port["containerPort"].as_u64())
                .unwrap_or_else(|| panic!("no container port named {name:?}")),
        }
    };

    // The pod's environment, with the Secret's values and a pod name where the manifests take them.
    let secret_name = text(&secret["metadata"]["name"]);
    let env: Vec<(String, String)> = container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|variable| {
            let name = text(&variable["name"]).to_owned();
            let from = &variable["valueFrom"];
            let value = if let Some(value) = variable["value"].as_str() {
                value.to_owned()
            } else if from["secretKeyRef"].is_mapping() {
                assert_eq!(text(&from["secretKeyRef"]["name"]), secret_name, "{name} reads another Secret");
                let key = &from["secretKeyRef"]["key"];
                text(&secret["stringData"][key]).to_owned()
            } else if from["fieldRef"]["fieldPath"] == "metadata.name" {
                format!("{}-0", text(&statefulset["metadata"]["name"]))
            } else {
                panic!("{name}: unexpected source {from:?}")
            };
            (name, value)
        })
        .collect();

    // The ConfigMap's config and rules, loaded as the pod sees them.
    let arguments = strings(&container["args"]);
    assert_eq!(&arguments[..2], ["run", "--config"]);
    let config_inside = PathBuf::from(&arguments[2]);
    let mounts = container["volumeMounts"].as_sequence().unwrap_or_else(|| panic!("no volumeMounts"));
    let mount_of = |volume: &str| {
        mounts
            .iter()
            .find(|mount| mount["name"] == volume)
            .map(|mount| PathBuf::from(text(&mount["mountPath"])))
            .unwrap_or_else(|| panic!("volume {volume} is not mounted"))
    };
    let config_volume = pod["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|volume| volume["configMap"]["name"] == config_map["metadata"]["name"])
        .unwrap_or_else(|| panic!("the ConfigMap is not a volume"));
    let scratch = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let Value::Mapping(data) = &config_map["data"] else { panic!("the ConfigMap has no data") };
    for (key, value) in data {
        std::fs::write(scratch.path().join(text(key)), text(value)).unwrap_or_else(|err| panic!("{err}"));
    }
    let mounted: Mounts = vec![(scratch.path().to_owned(), mount_of(text(&config_volume["name"])))];
    let config = load_in_container(&mounted, &config_inside, &env);
    assert!(config.kafka.sasl_password.is_some(), "the Secret's password reaches the config");
    assert_eq!(config.kafka.client_id, format!("{}-0", text(&statefulset["metadata"]["name"])));

    // Probes on the API port, which listens on every interface.
    let listen: SocketAddr = config.http.listen;
    assert!(listen.ip().is_unspecified(), "http.listen {listen} cannot be probed by the kubelet");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(port_named(&get["port"]), u64::from(listen.port()), "{probe} port");
    }

    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or_else(|| panic!("no grace period"));
    assert!(
        grace * 1000 > config.processing.drain_timeout_ms,
        "terminationGracePeriodSeconds {grace} s must exceed drain_timeout_ms {}",
        config.processing.drain_timeout_ms
    );

    let claims = spec["volumeClaimTemplates"].as_sequence().unwrap_or_else(|| panic!("no volumeClaimTemplates"));
    assert_eq!(claims.len(), 1);
    assert_eq!(mount_of(text(&claims[0]["metadata"]["name"])), config.state.dir, "the claim holds state.dir");
    assert!(claims[0]["spec"]["resources"]["requests"]["storage"].is_string());

    let replicas = spec["replicas"].as_u64().unwrap_or_else(|| panic!("no replicas"));
    assert!(
        (1..=u64::from(config.topics.partitions)).contains(&replicas),
        "{replicas} replicas for {} partitions: the extra ones would sit idle",
        config.topics.partitions
    );

    let resources = &container["resources"];
    for (kind, resource) in [("requests", "cpu"), ("requests", "memory"), ("limits", "memory")] {
        assert!(resources[kind][resource].is_string(), "resources.{kind}.{resource} is not set");
    }
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));

    // Services, PDB and ServiceMonitor find the pods and the port.
    for service in &services {
        assert!(selects(&service["spec"]["selector"], pod_labels), "{:?} selects no pod", service["metadata"]["name"]);
        for port in service["spec"]["ports"].as_sequence().into_iter().flatten() {
            assert_eq!(port_named(&port["targetPort"]), u64::from(listen.port()));
        }
    }
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels), "the PDB selects no pod");
    assert!(pdb["spec"]["maxUnavailable"].is_number() || pdb["spec"]["minAvailable"].is_number());
    assert!(selects(&monitor["spec"]["selector"]["matchLabels"], &api["metadata"]["labels"]));
    assert!(!selects(&monitor["spec"]["selector"]["matchLabels"], &headless[0]["metadata"]["labels"]));
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    let api_ports = api["spec"]["ports"].as_sequence().into_iter().flatten();
    assert!(api_ports.clone().any(|port| port["name"] == endpoint["port"]), "the ServiceMonitor's port is not named");
}

// ---- the operator's documentation ----------------------------------------------------------------------

/// The first cell of each row of the README table that follows `heading`.
fn readme_table_keys(heading: &str) -> BTreeSet<String> {
    let readme = read(&manifest("README.md"));
    let section = readme.split_once(heading).map(|(_, rest)| rest).unwrap_or_else(|| panic!("no {heading:?}"));
    section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|row| row.split('|').nth(1).unwrap_or_default().trim().trim_matches('`').to_owned())
        .collect()
}

#[test]
fn every_alert_rule_is_explained_in_the_readme() {
    let rules = yaml(&deploy().join("prometheus/alerts.yaml"));
    let alerts: BTreeSet<String> = rules["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_sequence().into_iter().flatten())
        .filter_map(|rule| rule["alert"].as_str().map(str::to_owned))
        .collect();
    let expected =
        ["LeadscoreConsumerLagGrowing", "LeadscoreDlqRateHigh", "LeadscoreNotReady", "LeadscoreRestoreStuck"];
    assert_eq!(alerts, expected.iter().map(|name| name.to_string()).collect());
    assert_eq!(readme_table_keys("### Alerts\n"), alerts, "the README's alert table and alerts.yaml differ");
}

#[test]
fn every_metric_is_documented_in_the_readme() {
    let documented: BTreeSet<String> = readme_table_keys("### Metrics\n")
        .into_iter()
        .map(|metric| metric.split('{').next().unwrap_or_default().to_owned())
        .collect();
    let telemetry = read(&manifest("src/telemetry.rs"));
    let names: Vec<&str> = telemetry
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|literal| literal.starts_with("leadscore_") && !literal.contains(' '))
        .collect();
    assert!(names.len() >= 10, "src/telemetry.rs names only {names:?}");
    for name in names {
        assert!(documented.contains(name), "{name} is not in the README's metrics table");
    }
}
