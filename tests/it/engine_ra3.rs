//! The RA3 backend as a user runs it: the engine starts the emulated FESL and GP servers and
//! the taps in front of them; the scripted client logs in through the taps, and the capture
//! holds the whole session, decoded without errors.

use crate::common::free_port;
use std::net::SocketAddr;

use gamewire::dissect::registry::Registry;
use gamewire::dissect::session::decode_capture;
use gamewire::engine::config::{Config, TapConfig};
use gamewire::engine::{Engine, RouteState, StartOptions};
use gamewire::security::{TEST_EMAIL, TEST_PASSWORD};

fn running(engine: &Engine, name: &str) -> SocketAddr {
    match engine
        .routes()
        .into_iter()
        .find(|r| r.name == name)
        .unwrap()
        .state
    {
        RouteState::Running(a) => a,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn the_scripted_client_logs_in_through_the_taps_and_the_capture_decodes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (fesl_server, gp_server) = (free_port(), free_port());
    let tap = |name: &str, upstream: SocketAddr| TapConfig {
        name: name.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: upstream.to_string(),
        dissector: Some(name.into()),
        ..TapConfig::default()
    };
    let mut config = Config {
        data_dir: dir.path().join("data"),
        certs_dir: dir.path().join("certs"),
        taps: vec![tap("fesl", fesl_server), tap("gp", gp_server)],
        ..Config::default()
    };
    config.proxy.enabled = false;
    config.servers.disable_all();
    assert!(config.servers.enable_at("fesl", fesl_server));
    assert!(config.servers.enable_at("gp", gp_server));
    let engine = Engine::start(config, StartOptions::default()).unwrap();
    assert_eq!(running(&engine, "fesl-server"), fesl_server);
    let (fesl_tap, gp_tap) = (running(&engine, "fesl"), running(&engine, "gp"));

    let result = engine
        .handle()
        .block_on(gamewire::clients::ra3::run_fesl_flow(
            fesl_tap,
            gp_tap,
            TEST_EMAIL,
            TEST_PASSWORD,
            Some("Recorded"),
            |_| {},
        ))
        .expect("the seeded test account logs in through the taps");
    assert_eq!(result.persona, "Recorded");
    assert!(
        dir.path().join("data/gamewire.db").exists(),
        "the accounts database lives in the data directory"
    );

    let data = engine.store().read();
    let routes: Vec<_> = data
        .connections()
        .iter()
        .map(|c| c.route.clone().unwrap())
        .collect();
    assert_eq!(routes, ["fesl", "gp"]);
    let decoded = decode_capture(&Registry::standard(), &Default::default(), &data, None);
    let labels: Vec<String> = decoded
        .messages
        .values()
        .flatten()
        .map(|d| {
            assert!(
                !d.message.tree.has_error(),
                "error node in {}",
                d.message.label
            );
            d.message.label.clone()
        })
        .collect();
    for want in [
        "fsys Hello",
        "acct NuLogin",
        "acct NuLoginPersona",
        "acct GameSpyPreAuth",
        "gp login",
    ] {
        assert!(labels.iter().any(|l| l == want), "no {want} in {labels:?}");
    }
}
