//! The Star Citizen services as a user runs them: an engine with the diffusion, login, game
//! and catch-all servers behind their taps (free ports instead of the seed's), driven by
//! real clients: curl on the login form and `/verify`, PyJWT checking our tokens against
//! our JWKS, Python grpcio with stubs generated from `proto/` by grpcio-tools, raw sockets
//! on diffusion, and the scripted client. The captures decode with names from `proto/`.

use crate::common::free_port;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use gamewire::capture::Direction;
use gamewire::clients::sc::{ScClientOptions, run_flow};
use gamewire::dissect::Node;
use gamewire::dissect::registry::Registry;
use gamewire::dissect::session::decode_capture;
use gamewire::engine::config::{Config, TapConfig};
use gamewire::engine::{Engine, RouteState, StartOptions};
use gamewire::security::jwt::{Claims, DEFAULT_ISSUER, Signer};
use gamewire::security::{HashCost, Store, TEST_EMAIL, TEST_PASSWORD};
use gamewire::servers::sc::CatchallRule;
use prost::Message as _;

struct Sc {
    engine: Engine,
    dir: tempfile::TempDir,
    /// Tap addresses by tap name, and `sc-diffusion-server` for the bare diffusion server.
    addr: HashMap<&'static str, SocketAddr>,
    ca: PathBuf,
    /// The accounts database, opened alongside the engine.
    store: Store,
    rt: tokio::runtime::Runtime,
}

impl Sc {
    fn start(catchall: Vec<CatchallRule>) -> Sc {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let db = dir.path().join("data/gamewire.db");
        // A second account made before the engine opens the database, to disable later.
        let store = rt.block_on(async {
            let s = Store::open(&db)
                .await
                .unwrap()
                .with_hash_cost(HashCost::Cheap);
            s.ensure_test_account().await.unwrap();
            s.add_user("pilot@gamewire.local", "pilot-pass", "SecondPilot")
                .await
                .unwrap();
            s
        });
        let servers: HashMap<&str, SocketAddr> = [
            "sc-diffusion-server",
            "sc-login-server",
            "sc-game-server",
            "sc-catchall-server",
        ]
        .into_iter()
        .map(|n| (n, free_port()))
        .collect();
        let taps: HashMap<&str, SocketAddr> =
            ["sc-diffusion-tls", "sc-login", "sc-game", "sc-catchall"]
                .into_iter()
                .map(|n| (n, free_port()))
                .collect();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            certs_dir: dir.path().join("certs"),
            ..Config::default()
        };
        config.proxy.enabled = false;
        config.servers.disable_all();
        for (section, route) in [
            ("sc_diffusion", "sc-diffusion-server"),
            ("sc_login", "sc-login-server"),
            ("sc_game", "sc-game-server"),
            ("sc_catchall", "sc-catchall-server"),
        ] {
            assert!(config.servers.enable_at(section, servers[route]));
        }
        // The defaults, moved to the free ports.
        let mut sc_taps: Vec<TapConfig> = gamewire::engine::config::default_taps()
            .into_iter()
            .filter(|t| t.name.starts_with("sc-"))
            .collect();
        for t in &mut sc_taps {
            let server = match t.name.as_str() {
                "sc-diffusion-tls" => "sc-diffusion-server",
                "sc-login" => "sc-login-server",
                "sc-game" => "sc-game-server",
                _ => "sc-catchall-server",
            };
            t.listen = taps[t.name.as_str()];
            t.upstream = servers[server].to_string();
            t.tls_name = Some("localhost".into());
        }
        config.taps = sc_taps;
        for s in &mut config.servers.sc.services {
            s.port = match s.name.as_str() {
                "authentication_service" => taps["sc-login"].port(),
                "diffusion_service" => taps["sc-diffusion-tls"].port(),
                _ => taps["sc-game"].port(),
            };
        }
        config.servers.sc.catchall = catchall;
        let engine = Engine::start(config, StartOptions::default()).unwrap();
        for r in engine
            .routes()
            .into_iter()
            .filter(|r| r.name.starts_with("sc-"))
        {
            assert!(
                matches!(r.state, RouteState::Running(_)),
                "route {} is {:?}",
                r.name,
                r.state
            );
        }
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, engine.ca().unwrap().cert_pem()).unwrap();
        let mut addr = taps;
        addr.insert("sc-diffusion-server", servers["sc-diffusion-server"]);
        Sc {
            engine,
            dir,
            addr,
            ca,
            store,
            rt,
        }
    }

    fn login_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr["sc-login"])
    }

    /// The engine's signing key, as the servers load it.
    fn signer(&self) -> Signer {
        Signer::load_or_create(&self.dir.path().join("certs"), DEFAULT_ISSUER).unwrap()
    }

    /// Decodes the capture with the built-in schemas; every node's display text per route.
    fn decoded_displays(&self, route: &str) -> Vec<(Direction, String)> {
        let data = self.engine.store().read();
        // The engine's own context: the built-in schemas and its JWT issuer's key.
        let ctx = self.engine.dissect_context();
        let decoded = decode_capture(&Registry::standard(), &ctx, &data, None);
        let mut out = Vec::new();
        for conn in data
            .connections()
            .iter()
            .filter(|c| c.route.as_deref() == Some(route))
        {
            for p in data.packets_of(conn.id) {
                for m in decoded.of_packet(p.id) {
                    let mut trees: Vec<&Node> = vec![&m.message.tree];
                    trees.extend(m.message.derived.iter().map(|d| &d.tree));
                    for t in trees {
                        for (_, n) in t.walk() {
                            out.push((m.direction, format!("{} = {}", n.name, n.display_value())));
                            if let Some(e) = n.error() {
                                out.push((m.direction, format!("ERROR {}: {e}", n.name)));
                            }
                        }
                    }
                    out.push((m.direction, format!("LABEL {}", m.message.label)));
                }
            }
        }
        out
    }
}

/// curl's status code and body.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_owned())
}

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn claims_for(issuer: &str, exp: i64) -> Claims {
    Claims {
        iss: issuer.into(),
        sub: TEST_EMAIL.into(),
        account_id: "1000001".into(),
        citizen_id: "2001462951".into(),
        displayname: "x".into(),
        scope: vec![],
        roles: vec![],
        iat: 0,
        exp,
        jti: "forged".into(),
    }
}

const PYJWT_VERIFY: &str = r#"
import sys, json, jwt
token, jwks, iss = sys.argv[1:4]
key = jwt.PyJWKSet.from_json(jwks).keys[0]
claims = jwt.decode(token, key.key, algorithms=["ES256"], issuer=iss)
try:
    jwt.decode(token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB"), key.key, algorithms=["ES256"])
    print("TAMPERED TOKEN ACCEPTED")
except jwt.InvalidSignatureError:
    pass
print(json.dumps(claims))
"#;

#[test]
fn curl_logs_in_through_the_form_verify_names_each_refusal_and_pyjwt_accepts_our_tokens() {
    let sc = Sc::start(Vec::new());
    let (code, form) = curl(&[&sc.login_url("/")]);
    assert_eq!(code, 200);
    assert!(
        form.contains("<form") && form.contains("name=\"password\""),
        "{form}"
    );

    // The HTML form, as a browser posts it.
    let (code, page) = curl(&[
        "--data-urlencode",
        &format!("username={TEST_EMAIL}"),
        "--data-urlencode",
        &format!("password={TEST_PASSWORD}"),
        &sc.login_url("/login"),
    ]);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("loginData.json was written"), "{page}");
    let login_data: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sc.dir.path().join("data/loginData.json")).unwrap())
            .unwrap();
    for key in [
        "username",
        "token",
        "auth_token",
        "access_token",
        "account_id",
        "displayname",
        "email",
        "character_id",
        "location",
        "universe",
    ] {
        assert!(login_data.get(key).is_some(), "loginData.json lacks {key}");
    }
    assert_eq!(login_data["email"], TEST_EMAIL);
    assert_eq!(login_data["location"], "Stanton_ArcCorp_Area18");
    assert_eq!(
        login_data["star_network"]["port"],
        sc.addr["sc-game"].port(),
        "star_network points at the game service from discovery"
    );
    let form_token = login_data["token"].as_str().unwrap().to_owned();
    assert!(page.contains(&form_token));

    // JSON, as the scripted client posts it.
    let (code, body) = curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        &format!(r#"{{"username":"{TEST_EMAIL}","password":"{TEST_PASSWORD}"}}"#),
        &sc.login_url("/login"),
    ]);
    assert_eq!(code, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = reply["token"].as_str().unwrap().to_owned();

    let (code, body) = curl(&[
        "-H",
        &format!("Authorization: Bearer {token}"),
        &sc.login_url("/verify"),
    ]);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let claims = &v["claims"];
    assert_eq!(claims["iss"], DEFAULT_ISSUER);
    assert_eq!(claims["sub"], TEST_EMAIL);
    assert_eq!(claims["account_id"], "1000001");
    assert_eq!(claims["citizen_id"], "2001462951");
    assert_eq!(
        claims["scope"],
        serde_json::json!(["game:access", "game:play", "game:chat"])
    );
    assert_eq!(
        claims["roles"],
        serde_json::json!(["citizen", "backer", "player"])
    );
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());

    // PyJWT with the keys from our JWKS.
    let (code, jwks) = curl(&[&sc.login_url("/.well-known/jwks.json")]);
    assert_eq!(code, 200);
    let out = python(PYJWT_VERIFY, &[&token, &jwks, DEFAULT_ISSUER]);
    assert!(!out.contains("TAMPERED"), "{out}");
    let py: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(py["displayname"], claims["displayname"]);

    // The status page lists both sessions.
    let (_, status) = curl(&[&sc.login_url("/status")]);
    assert!(status.contains("2 active session(s)"), "{status}");
    assert!(status.contains(TEST_EMAIL));

    // Refusals, each with its reason.
    let reason = |code_body: (u16, String)| -> String {
        assert_eq!(code_body.0, 401, "{}", code_body.1);
        let v: serde_json::Value = serde_json::from_str(&code_body.1).unwrap();
        v["reason"].as_str().unwrap().to_owned()
    };
    let verify = |t: &str| {
        curl(&[
            "-H",
            &format!("Authorization: Bearer {t}"),
            &sc.login_url("/verify"),
        ])
    };
    let bad_password = curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        &format!(r#"{{"username":"{TEST_EMAIL}","password":"nope"}}"#),
        &sc.login_url("/login"),
    ]);
    assert_eq!(reason(bad_password), "wrong email or password");
    let body = token.split('.').nth(1).unwrap();
    let none = format!("{}.{body}.", b64url(br#"{"alg":"none","typ":"JWT"}"#));
    assert!(reason(verify(&none)).contains("alg none"));
    let other_key = Signer::ephemeral(DEFAULT_ISSUER).unwrap();
    let forged = other_key
        .sign(&claims_for(DEFAULT_ISSUER, i64::MAX / 2))
        .unwrap();
    assert!(reason(verify(&forged)).contains("bad signature"));
    let ours = sc.signer();
    let expired = ours.sign(&claims_for(DEFAULT_ISSUER, 1_000)).unwrap();
    assert_eq!(reason(verify(&expired)), "token expired");
    let wrong_iss = Signer::load_or_create(&sc.dir.path().join("certs"), "https://evil.example")
        .unwrap()
        .sign(&claims_for("https://evil.example", i64::MAX / 2))
        .unwrap();
    assert!(reason(verify(&wrong_iss)).contains("wrong issuer"));
    assert_eq!(reason(verify("")), "no token");

    // Logout ends the session; a disabled account's tokens stop working.
    let (code, _) = curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {form_token}"),
        &sc.login_url("/logout"),
    ]);
    assert_eq!(code, 200);
    assert_eq!(reason(verify(&form_token)), "session logged out");
    let (code, body) = curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"username":"pilot@gamewire.local","password":"pilot-pass"}"#,
        &sc.login_url("/login"),
    ]);
    assert_eq!(code, 200, "{body}");
    let pilot: serde_json::Value = serde_json::from_str(&body).unwrap();
    let pilot_token = pilot["token"].as_str().unwrap().to_owned();
    assert_eq!(verify(&pilot_token).0, 200);
    sc.rt
        .block_on(sc.store.disable("pilot@gamewire.local"))
        .unwrap();
    assert_eq!(reason(verify(&pilot_token)), "account disabled");
    // And the first session still works: one client's trouble is not another's.
    assert_eq!(verify(&token).0, 200);

    // The tap recorded the HTTP exchanges.
    let shown = sc.decoded_displays("sc-login");
    assert!(
        shown.iter().any(|(_, s)| s.contains("POST /login")),
        "{shown:#?}"
    );
}

/// Generates the Python stubs from our proto/ into `dir` (grpcio-tools, as CI installs it).
fn generate_stubs(dir: &Path) {
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let status = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto)
        .arg(format!("--python_out={}", dir.display()))
        .arg(format!("--grpc_python_out={}", dir.display()))
        .args([
            "sc/login.proto",
            "sc/push.proto",
            "sc/character.proto",
            "sc/entitlement.proto",
        ])
        .status()
        .expect("python3 runs");
    assert!(
        status.success(),
        "grpcio-tools failed: run `pip install grpcio-tools`"
    );
}

const GRPC_CLIENT: &str = r#"
import sys, json, queue, urllib.request
addr, ca_path, stubs, login_addr, user, password, bad_token = sys.argv[1:8]
sys.path.insert(0, stubs)
import grpc
from sc import login_pb2, login_pb2_grpc, push_pb2, push_pb2_grpc, entitlement_pb2

req = urllib.request.Request(
    f"http://{login_addr}/login",
    data=json.dumps({"username": user, "password": password}).encode(),
    headers={"Content-Type": "application/json"},
)
token = json.load(urllib.request.urlopen(req, timeout=20))["token"]
creds = grpc.ssl_channel_credentials(root_certificates=open(ca_path, "rb").read())
opts = [("grpc.ssl_target_name_override", "localhost"), ("grpc.enable_http_proxy", 0)]
md = [("authorization", "Bearer " + token)]
out = {}

def code_of(f):
    try:
        f()
        return "OK"
    except grpc.RpcError as e:
        return f"{e.code().name}: {e.details()}"

with grpc.secure_channel(addr, creds, options=opts) as ch:
    login = login_pb2_grpc.LoginServiceStub(ch)
    r = login.InitiateLogin(
        login_pb2.InitiateLoginRequest(
            session_id="py_session",
            version=login_pb2.VersionIdentifier(base_cl=1, shelf_cl=2),
        ),
        metadata=md,
        timeout=20,
    )
    out["account_id"] = r.account_id
    out["displayname"] = r.displayname
    out["status"] = login_pb2.LoginRequestStatus.Name(r.status)
    out["no_token"] = code_of(lambda: login.InitiateLogin(login_pb2.InitiateLoginRequest(), timeout=20))
    out["bad_token"] = code_of(lambda: login.InitiateLogin(
        login_pb2.InitiateLoginRequest(), metadata=[("authorization", "Bearer " + bad_token)], timeout=20))
    raw = ch.unary_unary("/sc.external.services.login.v1.LoginService/InitiateLogin",
                         request_serializer=None, response_deserializer=None)
    out["malformed"] = code_of(lambda: raw(b"\x0a\xff\xff", metadata=md, timeout=20))

    q = queue.Queue()
    q.put(push_pb2.ListenRequest(session_id="py_session"))
    def requests():
        while True:
            item = q.get()
            if item is None:
                return
            yield item
    seq = []
    push = push_pb2_grpc.PushServiceStub(ch)
    for n in push.Listen(requests(), metadata=md, timeout=20):
        kind = n.WhichOneof("payload")
        if kind == "reconcile_account_update":
            u = n.reconcile_account_update
            seq.append(entitlement_pb2.ReconcileAccountPhase.Name(u.phase) + " "
                       + entitlement_pb2.ReconcileAccountStatus.Name(u.status))
            if (u.phase == entitlement_pb2.RECONCILE_ACCOUNT_PHASE_ENTITLEMENT
                    and u.status == entitlement_pb2.RECONCILE_ACCOUNT_STATUS_COMPLETE):
                q.put(None)
        elif kind == "login_progress":
            seq.append("login_progress " + login_pb2.LoginRequestStatus.Name(n.login_progress.status))
        else:
            seq.append(kind)
    out["listen"] = seq

    health = ch.unary_unary("/grpc.health.v1.Health/Check",
                            request_serializer=None, response_deserializer=None)
    out["health"] = health(b"", timeout=20).hex()
    refl = ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                            request_serializer=None, response_deserializer=None)
    out["reflection"] = b"".join(refl(iter([b"\x3a\x01*"]), timeout=20)).decode("latin-1")
    # Logging out at the login server ends the token at the game server too.
    urllib.request.urlopen(urllib.request.Request(
        f"http://{login_addr}/logout", data=b"", method="POST",
        headers={"Authorization": "Bearer " + token}), timeout=20)
    out["after_logout"] = code_of(lambda: login.InitiateLogin(
        login_pb2.InitiateLoginRequest(session_id="py_session"), metadata=md, timeout=20))
print(json.dumps(out))
"#;

#[test]
fn grpcio_logs_in_and_listens_through_the_tls_tap_and_the_capture_names_every_message() {
    let sc = Sc::start(Vec::new());
    let stubs = tempfile::tempdir().unwrap();
    generate_stubs(stubs.path());
    let body = "eyJzdWIiOiJ4In0";
    let alg_none = format!("{}.{body}.", b64url(br#"{"alg":"none"}"#));
    let out = python(
        GRPC_CLIENT,
        &[
            &sc.addr["sc-game"].to_string(),
            sc.ca.to_str().unwrap(),
            stubs.path().to_str().unwrap(),
            &sc.addr["sc-login"].to_string(),
            TEST_EMAIL,
            TEST_PASSWORD,
            &alg_none,
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["account_id"], 1000001);
    assert_eq!(v["status"], "IN_QUEUE");
    let no_token = v["no_token"].as_str().unwrap();
    assert!(
        no_token.starts_with("UNAUTHENTICATED: no token"),
        "{no_token}"
    );
    let bad = v["bad_token"].as_str().unwrap();
    assert!(
        bad.starts_with("UNAUTHENTICATED") && bad.contains("alg none"),
        "{bad}"
    );
    let after_logout = v["after_logout"].as_str().unwrap();
    assert_eq!(after_logout, "UNAUTHENTICATED: session logged out");
    let malformed = v["malformed"].as_str().unwrap();
    assert!(malformed.starts_with("INVALID_ARGUMENT"), "{malformed}");
    let listen: Vec<&str> = v["listen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        listen,
        [
            "login_progress IN_QUEUE",
            "login_progress AUTHENTICATING",
            "login_progress LOADING_ACCOUNT",
            "login_progress LOADING_CHARACTERS",
            "login_progress DONE",
            "login_completed",
            "character_status",
            "character_status",
            "RECONCILE_ACCOUNT_PHASE_LTP RECONCILE_ACCOUNT_STATUS_EXECUTING",
            "RECONCILE_ACCOUNT_PHASE_LTP RECONCILE_ACCOUNT_STATUS_COMPLETE",
            "RECONCILE_ACCOUNT_PHASE_PLATFORM RECONCILE_ACCOUNT_STATUS_EXECUTING",
            "RECONCILE_ACCOUNT_PHASE_PLATFORM RECONCILE_ACCOUNT_STATUS_COMPLETE",
            "RECONCILE_ACCOUNT_PHASE_ENTITLEMENT RECONCILE_ACCOUNT_STATUS_EXECUTING",
            "RECONCILE_ACCOUNT_PHASE_ENTITLEMENT RECONCILE_ACCOUNT_STATUS_COMPLETE",
        ]
    );
    assert_eq!(v["health"], "0801", "health says SERVING");
    let reflection = v["reflection"].as_str().unwrap();
    for s in [
        "sc.external.services.login.v1.LoginService",
        "sc.external.services.push.v1.PushService",
        "sc.external.services.character.v1.CharacterService",
    ] {
        assert!(
            reflection.contains(s),
            "reflection lacks {s}: {reflection:?}"
        );
    }

    wait_idle(&sc.engine);
    let shown = sc.decoded_displays("sc-game");
    let has = |dir: Direction, text: &str| shown.iter().any(|(d, s)| *d == dir && s.contains(text));
    assert!(
        has(
            Direction::ClientToServer,
            "sc.external.services.login.v1.InitiateLoginRequest"
        ),
        "{shown:#?}"
    );
    assert!(has(
        Direction::ServerToClient,
        "sc.external.services.login.v1.InitiateLoginResponse"
    ));
    assert!(has(
        Direction::ServerToClient,
        "sc.external.services.push.v1.ListenResponse"
    ));
    assert!(has(Direction::ServerToClient, "reconcile_account_update"));
    assert!(has(
        Direction::ServerToClient,
        "RECONCILE_ACCOUNT_PHASE_ENTITLEMENT"
    ));
    assert!(has(Direction::ServerToClient, "UNAUTHENTICATED"));
}

/// Waits until every recorded connection has closed.
fn wait_idle(engine: &Engine) {
    let start = Instant::now();
    loop {
        let data = engine.store().read();
        if data.connection_count() > 0 && data.connections().iter().all(|c| c.closed.is_some()) {
            return;
        }
        let open: Vec<String> = data
            .connections()
            .iter()
            .filter(|c| c.closed.is_none())
            .map(|c| format!("{:?} {} -> {}", c.route, c.client, c.server))
            .collect();
        drop(data);
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "connections never closed: {open:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn diffusion_frame(payload: &[u8]) -> Vec<u8> {
    gamewire::dissect::sc::write_frame(payload)
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut head = [0u8; 8];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[4..], [0xef, 0xbe, 0xad, 0xde]);
    let mut body = vec![0u8; u32::from_le_bytes(head[..4].try_into().unwrap()) as usize];
    s.read_exact(&mut body).unwrap();
    body
}

#[test]
fn diffusion_answers_a_socket_client_and_survives_garbage() {
    use gamewire::dissect::sc::pb::diffusion as pb;
    let sc = Sc::start(Vec::new());
    let addr = sc.addr["sc-diffusion-server"];
    let connect = || {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    // Garbage: the server closes that connection, without a reply.
    let mut bad = connect();
    bad.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    assert_eq!(bad.read_to_end(&mut rest).unwrap(), 0);
    // A frame whose payload is not protobuf gets no reply; the connection goes on.
    let mut s = connect();
    s.write_all(&diffusion_frame(b"\x0a\xff")).unwrap();
    let discovery = pb::ServiceDiscoveryRequest {
        message_name: "diff.service.online".into(),
        client: Some(pb::ClientInfo {
            name: "Star Citizen Game Client".into(),
            client_id: "sc_client".into(),
            number_3: 4,
            number_4: 1,
        }),
        sequence: 1,
    };
    s.write_all(&diffusion_frame(&discovery.encode_to_vec()))
        .unwrap();
    let list = pb::ServiceList::decode(&read_frame(&mut s)[..]).unwrap();
    let names: Vec<_> = list.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "authentication_service",
            "diffusion_service",
            "game_service"
        ]
    );
    let game = &list.services[2];
    assert_eq!(game.port, u32::from(sc.addr["sc-game"].port()));
    assert_eq!(game.protocols, ["grpc", "http2"]);
    s.write_all(&diffusion_frame(
        &pb::RegionSetup {
            message_name: "cmsg_set_region_id".into(),
            region_id: "eu-west".into(),
        }
        .encode_to_vec(),
    ))
    .unwrap();
    let confirm = pb::RegionConfirmation::decode(&read_frame(&mut s)[..]).unwrap();
    assert!(confirm.confirmed);
    let mut acks = Vec::new();
    for seq in [1, 2] {
        s.write_all(&diffusion_frame(
            &pb::Heartbeat {
                message_name: "heartbeat".into(),
                sequence: seq,
            }
            .encode_to_vec(),
        ))
        .unwrap();
        acks.push(pb::HeartbeatAck::decode(&read_frame(&mut s)[..]).unwrap());
    }
    assert_eq!(acks[0].sequence, 1);
    assert_eq!(acks[1].sequence, 2);
    assert_eq!(
        acks[0].session_id, acks[1].session_id,
        "one session per connection"
    );
    let id = acks[0].session_id.strip_prefix("sc_session_").unwrap();
    let (unix, hex_part) = id.split_once('_').unwrap();
    assert!(unix.parse::<i64>().unwrap() > 1_700_000_000);
    assert!(u32::from_str_radix(hex_part, 16).is_ok());
}

const CATCHALL_CLIENT: &str = r#"
import sys, json, grpc
addr, ca_path = sys.argv[1:3]
creds = grpc.ssl_channel_credentials(root_certificates=open(ca_path, "rb").read())
opts = [("grpc.ssl_target_name_override", "localhost"), ("grpc.enable_http_proxy", 0)]
out = {}
with grpc.secure_channel(addr, creds, options=opts) as ch:
    for path in ["/google.unknown.v1.Thing/DoIt", "/google.cloud.Test/Missing",
                 "/sc.external.services.login.v1.LoginService/CancelLogin"]:
        call = ch.unary_unary(path, request_serializer=None, response_deserializer=None)
        try:
            out[path] = "OK " + call(b"\x0a\x01x", timeout=20).hex()
        except grpc.RpcError as e:
            out[path] = f"{e.code().name}: {e.details()}"
print(json.dumps(out))
"#;

#[test]
fn the_catch_all_answers_from_its_table_and_names_unmodelled_methods() {
    let sc = Sc::start(vec![
        CatchallRule {
            method: "/google.cloud.Test/Missing".into(),
            status: Some(5),
            message: Some("no such thing".into()),
            ..CatchallRule::default()
        },
        CatchallRule {
            method: "/sc.external.services.login.v1.LoginService/CancelLogin".into(),
            response_json: Some(r#"{"cancelled": true}"#.into()),
            ..CatchallRule::default()
        },
    ]);
    let out = python(
        CATCHALL_CLIENT,
        &[&sc.addr["sc-catchall"].to_string(), sc.ca.to_str().unwrap()],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let unknown = v["/google.unknown.v1.Thing/DoIt"].as_str().unwrap();
    assert!(
        unknown.starts_with("UNIMPLEMENTED") && unknown.contains("/google.unknown.v1.Thing/DoIt"),
        "{unknown}"
    );
    assert_eq!(v["/google.cloud.Test/Missing"], "NOT_FOUND: no such thing");
    assert_eq!(
        v["/sc.external.services.login.v1.LoginService/CancelLogin"],
        "OK 0801"
    );
    wait_idle(&sc.engine);
    let shown = sc.decoded_displays("sc-catchall");
    assert!(
        shown
            .iter()
            .any(|(_, s)| s.contains("/google.unknown.v1.Thing/DoIt")),
        "{shown:#?}"
    );
}

#[test]
fn the_scripted_client_runs_the_whole_flow_through_the_taps() {
    let sc = Sc::start(Vec::new());
    let roots = gamewire::proxy::tls::read_pem_certs(&sc.ca).unwrap();
    let opts = ScClientOptions {
        diffusion: sc.addr["sc-diffusion-tls"],
        diffusion_tls: true,
        server_name: "localhost".into(),
        roots,
        user: TEST_EMAIL.into(),
        password: TEST_PASSWORD.into(),
    };
    let result = sc.rt.block_on(run_flow(&opts, |_| {})).unwrap();
    assert_eq!(result.account_id, 1000001);
    assert_eq!(result.character_location, "Stanton_ArcCorp_Area18");
    assert!(result.session_id.starts_with("sc_session_"));
    let names: Vec<&str> = result.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        &names[..7],
        [
            "discovery",
            "lobby",
            "region",
            "heartbeat",
            "login",
            "initiate_login",
            "get_characters"
        ]
    );
    assert_eq!(
        result.notifications.last().map(String::as_str),
        Some(
            "reconcile_account_update RECONCILE_ACCOUNT_PHASE_ENTITLEMENT RECONCILE_ACCOUNT_STATUS_COMPLETE"
        )
    );

    // A wrong password stops at the login step with the server's reason.
    let bad = ScClientOptions {
        password: "wrong".into(),
        ..opts
    };
    let err = sc.rt.block_on(run_flow(&bad, |_| {})).unwrap_err();
    assert_eq!((err.step, err.http_status), ("login", Some(401)));

    wait_idle(&sc.engine);
    let diffusion = sc.decoded_displays("sc-diffusion-tls");
    for t in [
        "sc.diffusion.v1.ServiceDiscoveryRequest",
        "sc.diffusion.v1.ServiceList",
        "sc.diffusion.v1.LobbyDestinations",
        "sc.diffusion.v1.RegionConfirmation",
        "sc.diffusion.v1.HeartbeatAck",
    ] {
        assert!(
            diffusion.iter().any(|(_, s)| s.contains(t)),
            "no {t} in {diffusion:#?}"
        );
    }
    assert!(
        !diffusion.iter().any(|(_, s)| s.starts_with("ERROR")),
        "{diffusion:#?}"
    );
    // The token the login server signed verifies against the engine's issuer key wherever it
    // appears: the login reply, and the gRPC metadata.
    let login = sc.decoded_displays("sc-login");
    assert!(
        login.iter().any(|(_, s)| s == "signature valid = true"),
        "{login:#?}"
    );
    let game = sc.decoded_displays("sc-game");
    assert!(
        game.iter().any(|(_, s)| s == "signature valid = true"),
        "{game:#?}"
    );
    for t in [
        "sc.external.services.login.v1.InitiateLoginResponse",
        "sc.external.services.character.v1.GetCharactersResponse",
        "sc.external.services.push.v1.ListenRequest",
        "sc.external.services.push.v1.ListenResponse",
        "Stanton_ArcCorp_Area18",
    ] {
        assert!(
            game.iter().any(|(_, s)| s.contains(t)),
            "no {t} in {game:#?}"
        );
    }
}
