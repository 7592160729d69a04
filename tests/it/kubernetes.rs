//! `deploy/kubernetes/` against the worker it deploys: the settings it sets
//! exist, the secrets it mounts are where the `_FILE` settings look, the
//! probes and port are the worker's, the grace period outlasts the drain,
//! the memory limit covers what the prefetch lets a worker hold, and
//! KEDA's queue pattern takes exactly the request queues. The Kubernetes
//! schemas themselves are checked by `kubernetes-validate` in `.ci/run`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_norway::Value;

fn documents(file: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubernetes")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}")))
        .collect()
}

fn one(file: &str, kind: &str) -> Value {
    documents(file)
        .into_iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("{file} has a {kind}"))
}

fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is a string: {value:?}"))
}

/// A container's environment as name → value.
fn env_of(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| {
            (
                text(&e["name"], "name").to_owned(),
                text(&e["value"], "value").to_owned(),
            )
        })
        .collect()
}

/// Kubernetes memory quantities used here: `Mi` and `Gi`.
fn mebibytes(quantity: &str) -> u64 {
    if let Some(n) = quantity.strip_suffix("Mi") {
        n.parse().expect("Mi")
    } else if let Some(n) = quantity.strip_suffix("Gi") {
        n.parse::<u64>().expect("Gi") * 1024
    } else {
        panic!("unexpected quantity {quantity}")
    }
}

#[test]
fn the_manifests_fit_the_worker_they_deploy() {
    let deployment = one("deployment.yaml", "Deployment");
    let job = one("migrate-job.yaml", "Job");
    let secret = one("secret.yaml", "Secret");
    let help = Command::new(env!("CARGO_BIN_EXE_procinst"))
        .args(["run", "--help"])
        .output()
        .expect("procinst run --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let secret_keys: Vec<&str> = secret["stringData"]
        .as_mapping()
        .expect("stringData")
        .keys()
        .map(|k| text(k, "key"))
        .collect();

    for pod in [
        &deployment["spec"]["template"]["spec"],
        &job["spec"]["template"]["spec"],
    ] {
        let container = &pod["containers"][0];
        let env = env_of(container);
        for name in env.keys() {
            assert!(
                help.contains(&format!("[env: {name}")),
                "{name} is a setting of procinst"
            );
        }
        // Every *_FILE setting names a file of the mounted secret.
        let mounts = container["volumeMounts"].as_sequence().expect("mounts");
        for (name, path) in env.iter().filter(|(k, _)| k.ends_with("_FILE")) {
            let (dir, file) = path.rsplit_once('/').expect("a path");
            let mount = mounts
                .iter()
                .find(|m| m["mountPath"].as_str() == Some(dir))
                .unwrap_or_else(|| panic!("{name}: nothing is mounted at {dir}"));
            let volume = pod["volumes"]
                .as_sequence()
                .expect("volumes")
                .iter()
                .find(|v| v["name"] == mount["name"])
                .expect("the mount's volume");
            assert_eq!(volume["secret"]["secretName"], secret["metadata"]["name"]);
            let item = volume["secret"]["items"]
                .as_sequence()
                .expect("items")
                .iter()
                .find(|i| i["path"].as_str() == Some(file))
                .unwrap_or_else(|| panic!("{name}: the secret volume has no {file}"));
            assert!(
                secret_keys.contains(&text(&item["key"], "key")),
                "{name}: the Secret has the key"
            );
        }
    }

    let pod = &deployment["spec"]["template"]["spec"];
    let worker = &pod["containers"][0];
    let env = env_of(worker);
    assert_eq!(worker["args"][0], "run");
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "migrate"
    );
    // The probes are the worker's endpoints on the port it listens on.
    let port = worker["ports"][0]["containerPort"].as_u64().expect("port");
    assert_eq!(env["PROCINST_HTTP_ADDR"], format!("0.0.0.0:{port}"));
    assert_eq!(worker["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(worker["readinessProbe"]["httpGet"]["path"], "/readyz");
    // SIGTERM's drain ends before Kubernetes kills the pod.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    let drain: u64 = env["PROCINST_SHUTDOWN_TIMEOUT_S"].parse().expect("seconds");
    assert!(
        grace > drain,
        "grace {grace} s outlasts the drain {drain} s"
    );
    // The memory limit covers the bodies the prefetch lets the worker hold
    // (every queue it consumes: the interactive, the bulk and 8 shards)
    // beside its own 64 MiB.
    let prefetch: u64 = env["PROCINST_PREFETCH"].parse().expect("prefetch");
    let body: u64 = env["PROCINST_MAX_BODY_BYTES"].parse().expect("bytes");
    let held_mib = 10 * prefetch * body / (1 << 20);
    let limit = mebibytes(text(&worker["resources"]["limits"]["memory"], "limit"));
    assert!(
        limit >= held_mib + 64,
        "limit {limit} MiB holds {held_mib} MiB of bodies and the worker"
    );

    // The disruption budget, the service and KEDA all take these pods.
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selects = |selector: &Value| {
        selector
            .as_mapping()
            .expect("selector")
            .iter()
            .all(|(k, v)| labels[text(k, "label")] == *v)
    };
    assert!(selects(
        &one("pdb.yaml", "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    ));
    assert!(selects(&one("service.yaml", "Service")["spec"]["selector"]));
    let scaled = one("keda.yaml", "ScaledObject");
    assert_eq!(
        scaled["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );

    // KEDA's pattern sums exactly the request queues of the default names.
    let trigger = &scaled["spec"]["triggers"][0]["metadata"];
    assert_eq!(trigger["useRegex"], "true");
    let pattern = regex::Regex::new(text(&trigger["queueName"], "queueName")).expect("a regex");
    let mut queues = vec![
        "procinst.requests".to_owned(),
        "procinst.requests.bulk".to_owned(),
    ];
    queues.extend((0..8).map(|i| format!("procinst.requests.bulk.{i}")));
    for queue in &queues {
        assert!(pattern.is_match(queue), "{queue} counts");
    }
    for other in [
        "procinst.replies",
        "procinst.dead",
        "procinst.replies.inbox.1-ab",
        "procinst.requests.bulkhead",
    ] {
        assert!(!pattern.is_match(other), "{other} does not count");
    }
    let auth = one("keda.yaml", "TriggerAuthentication");
    let key = text(&auth["spec"]["secretTargetRef"][0]["key"], "key");
    assert!(secret_keys.contains(&key), "the Secret has {key}");
}
