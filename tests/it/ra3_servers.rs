//! The emulated Red Alert 3 backend over real sockets on 127.0.0.1 with a real SQLite file:
//! the whole login flow, every error code, fragmentation both ways, keep-alives, TLS,
//! bad input on the wire, the GP test vector, the recorded session through the dissectors,
//! and the accounts CLI through the built binary.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gamewire::capture::{Connection, Direction, NewPacket, StoreData, Timestamp, Transport};
use gamewire::clients::ra3::{self, FeslClient, HELLO, Step};
use gamewire::dissect::fesl::{self as fcodec, Fesl, Tag};
use gamewire::dissect::gp::{self as gcodec, Gp};
use gamewire::dissect::stream::decode_connection;
use gamewire::dissect::{Context, Dissector};
use gamewire::security::{HashCost, LoginError, Store, StoreError, TicketError};
use gamewire::servers::connection::ConnectionConfig;
use gamewire::servers::fesl::{FeslConfig, FeslCtx, FeslSession, Flow};
use gamewire::servers::gp::{GpConfig, GpCtx, GpSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const S2C: Direction = Direction::ServerToClient;

/// A FESL and a GP server on 127.0.0.1 over one accounts file; stopped when dropped.
pub(crate) struct Env {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) store: Store,
    pub(crate) fesl: SocketAddr,
    pub(crate) gp: SocketAddr,
    pub(crate) shutdown: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The settings of both servers.
#[derive(Clone)]
struct Configs {
    fesl: FeslConfig,
    gp: GpConfig,
}

fn test_config() -> Configs {
    let connection = ConnectionConfig {
        read_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_secs(20),
        ..ConnectionConfig::default()
    };
    Configs {
        fesl: FeslConfig {
            connection: connection.clone(),
            ..FeslConfig::default()
        },
        gp: GpConfig {
            connection,
            ..GpConfig::default()
        },
    }
}

async fn start(config: Configs) -> Env {
    start_with(config, None).await
}

/// A fresh accounts file in a temporary directory, with cheap password hashes.
pub(crate) async fn cheap_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data/accounts.db"))
        .await
        .unwrap()
        .with_hash_cost(HashCost::Cheap);
    (dir, store)
}

async fn start_with(config: Configs, tls: Option<Arc<rustls::ServerConfig>>) -> Env {
    let (dir, store) = cheap_store().await;
    let shutdown = CancellationToken::new();
    let fl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (fesl, gp) = (fl.local_addr().unwrap(), gl.local_addr().unwrap());
    let mut fctx = FeslCtx::new(store.clone(), config.fesl);
    fctx.tls = tls;
    tokio::spawn(gamewire::servers::fesl::run(fl, fctx, shutdown.clone()));
    tokio::spawn(gamewire::servers::gp::run(
        gl,
        GpCtx::new(store.clone(), config.gp),
        shutdown.clone(),
    ));
    Env {
        _dir: dir,
        store,
        fesl,
        gp,
        shutdown,
    }
}

async fn add(env: &Env, email: &str, persona: Option<&str>) -> i64 {
    let u = env.store.add_user(email, "pw", "Someone").await.unwrap();
    if let Some(p) = persona {
        env.store.add_persona(u.id, p).await.unwrap();
    }
    u.id
}

pub(crate) fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A client through Hello and the MemCheck answer.
async fn greeted(addr: SocketAddr) -> FeslClient {
    let mut c = FeslClient::connect(addr).await.unwrap();
    let n = c.send(b"fsys", HELLO).await.unwrap();
    let hello = c.recv().await.unwrap();
    assert_eq!((get(&hello.pairs, "TXN"), hello.number), (Some("Hello"), n));
    let mem = c.recv().await.unwrap();
    assert_eq!((get(&mem.pairs, "TXN"), mem.number), (Some("MemCheck"), 0));
    let answer = fcodec::write_packet(
        b"fsys",
        Tag::SingleServer,
        0,
        &[("TXN", "MemCheck"), ("result", "")],
        true,
    );
    c.write_raw(&answer).await.unwrap();
    c
}

fn code_of(r: Result<Vec<(String, String)>, ra3::FlowError>) -> u32 {
    r.expect_err("expected an error reply").fesl_code.unwrap()
}

/// Everything the server sends until it closes (or `wait` passes without a byte).
pub(crate) async fn read_until_close(s: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

pub(crate) fn fesl_messages(mut bytes: &[u8]) -> Vec<(fcodec::Header, Vec<(String, String)>)> {
    let mut out = Vec::new();
    while let Ok(h) = fcodec::parse_header(bytes) {
        let n = h.size as usize;
        if bytes.len() < n {
            break;
        }
        out.push((h, fcodec::parse_payload(&bytes[12..n]).unwrap()));
        bytes = &bytes[n..];
    }
    out
}

async fn assert_flow_works(env: &Env, email: &str) {
    let r = ra3::run_fesl_flow(env.fesl, env.gp, email, "pw", None, |_| {})
        .await
        .unwrap();
    assert!(r.persona_id > 0);
}

// ---------------------------------------------------------------------------------------
// Happy path and the recorded session.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_flow_creates_a_persona_and_logs_into_gp() {
    let env = start(test_config()).await;
    let uid = add(&env, "p1@test", None).await;
    let mut steps: Vec<Step> = Vec::new();
    let r = ra3::run_fesl_flow(env.fesl, env.gp, "p1@test", "pw", Some("Rookie"), |s| {
        steps.push(s)
    })
    .await
    .unwrap();
    let names: Vec<_> = steps.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "Hello",
            "MemCheck",
            "NuLogin",
            "NuGetPersonas",
            "NuAddPersona",
            "NuLoginPersona",
            "GameSpyPreAuth",
            "GP login"
        ]
    );
    assert!(steps.iter().all(|s| s.ok));
    assert_eq!(r.user_id, uid);
    let personas = env.store.personas_of(uid).await.unwrap();
    assert_eq!(personas.len(), 1);
    assert_eq!(
        (personas[0].id, personas[0].name.as_str()),
        (r.persona_id, "Rookie")
    );
    assert_ne!(r.persona_id, r.user_id, "profileId is the persona's id");

    // Second run: the persona exists, so no NuAddPersona.
    let mut names2 = Vec::new();
    ra3::run_fesl_flow(env.fesl, env.gp, "p1@test", "pw", Some("Rookie"), |s| {
        names2.push(s.name)
    })
    .await
    .unwrap();
    assert!(!names2.contains(&"NuAddPersona"));
    assert_eq!(names2.len(), 7);
}

fn assert_decodes_cleanly(
    dissector: &dyn Dissector,
    port: u16,
    log: &[(Direction, Vec<u8>)],
) -> Vec<String> {
    let mut data = StoreData::new();
    let c = data.add_connection(Connection::new(
        "127.0.0.1:50000".parse().unwrap(),
        format!("127.0.0.1:{port}").parse().unwrap(),
        Transport::Tcp,
        Timestamp(0),
    ));
    let mut bytes = [0usize; 2];
    for (i, (dir, b)) in log.iter().enumerate() {
        bytes[usize::from(*dir == S2C)] += b.len();
        data.append(NewPacket::new(c, *dir, Timestamp(i as i64), b.clone()))
            .unwrap();
    }
    let decoded = decode_connection(dissector, &Context::default(), data.packets_of(c));
    let mut seen = [0usize; 2];
    for d in &decoded {
        seen[usize::from(d.direction == S2C)] += d.bytes.len();
        for (_, n) in d.message.tree.walk() {
            assert!(
                n.error().is_none(),
                "{}: node {} has error {:?}",
                d.message.label,
                n.name,
                n.error()
            );
        }
    }
    assert_eq!(seen, bytes, "every byte belongs to a decoded message");
    decoded.iter().map(|d| d.message.label.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_session_decodes_without_errors_in_the_fesl_and_gp_dissectors() {
    let mut config = test_config();
    config.fesl.fragment_size = 256;
    let env = start(config).await;
    let uid = add(&env, "rec@test", Some("Recorder")).await;
    // Enough personas that the NuGetPersonas reply is fragmented (the client's Hello asks
    // for 8096, so make the server's reply long instead).
    for i in 0..400 {
        env.store
            .add_persona(uid, &format!("Alt{i:03}x"))
            .await
            .unwrap();
    }
    let r = ra3::run_fesl_flow(env.fesl, env.gp, "rec@test", "pw", Some("Recorder"), |_| {})
        .await
        .unwrap();
    let fesl_labels = assert_decodes_cleanly(&Fesl, 18800, &r.transcript.fesl);
    for want in [
        "Hello",
        "MemCheck",
        "NuLogin",
        "NuGetPersonas",
        "NuLoginPersona",
        "GameSpyPreAuth",
    ] {
        assert!(
            fesl_labels.iter().any(|l| l.contains(want)),
            "{want} missing from {fesl_labels:?}"
        );
    }
    // The persona list went out in fragments of the server's type tag.
    assert!(
        r.transcript
            .fesl
            .iter()
            .any(|(d, b)| *d == S2C && b.windows(5).any(|w| w == b"acct\xb0"))
    );
    let gp_labels = assert_decodes_cleanly(&Gp, 29900, &r.transcript.gp);
    assert_eq!(gp_labels.len(), 3, "{gp_labels:?}");
}

// ---------------------------------------------------------------------------------------
// Error codes and the state machine.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_errors_carry_the_fesl_codes_and_echo_the_packet_number() {
    let env = start(test_config()).await;
    add(&env, "ok@test", Some("Okay")).await;
    add(&env, "off@test", None).await;
    add(&env, "ban@test", None).await;
    env.store.disable("off@test").await.unwrap();
    env.store.set_banned("ban@test", true).await.unwrap();

    let mut c = greeted(env.fesl).await;
    let login = |email: &'static str, pw: &'static str| {
        [("TXN", "NuLogin"), ("nuid", email), ("password", pw)]
    };
    for (email, pw, want) in [
        ("nobody@test", "pw", 101),
        ("ok@test", "wrong", 122),
        ("off@test", "pw", 102),
        ("ban@test", "pw", 103),
    ] {
        let n = c.send(b"acct", &login(email, pw)).await.unwrap();
        let reply = c.recv().await.unwrap();
        assert_eq!(reply.number, n, "reply echoes the packet number");
        assert_eq!(&reply.command, b"acct");
        assert_eq!(get(&reply.pairs, "TXN"), Some("NuLogin"));
        assert_eq!(
            get(&reply.pairs, "errorCode"),
            Some(want.to_string().as_str()),
            "{email}"
        );
        assert_eq!(get(&reply.pairs, "errorContainer.[]"), Some("0"));
        assert!(get(&reply.pairs, "localizedMessage").is_some_and(|m| !m.is_empty()));
    }
    // After failures, the right password still works on the same connection.
    let ok = c
        .request("NuLogin", b"acct", &login("ok@test", "pw"))
        .await
        .unwrap();
    assert!(get(&ok, "lkey").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nulogin_reply_has_ids_lkey_and_the_default_entitlement() {
    let env = start(test_config()).await;
    let uid = add(&env, "ent@test", None).await;
    let mut c = greeted(env.fesl).await;
    let r = c
        .request(
            "NuLogin",
            b"acct",
            &[("TXN", "NuLogin"), ("nuid", "ent@test"), ("password", "pw")],
        )
        .await
        .unwrap();
    assert_eq!(get(&r, "userId"), Some(uid.to_string().as_str()));
    assert_eq!(get(&r, "displayName"), Some("Someone"));
    assert_eq!(get(&r, "entitledGameFeatureWrappers.[]"), Some("1"));
    assert_eq!(
        get(&r, "entitledGameFeatureWrappers.0.gameFeatureId"),
        Some("6014")
    );
    let lkey1 = get(&r, "lkey").unwrap().to_owned();
    assert!(lkey1.ends_with('.') && lkey1.len() == 28, "{lkey1}");
    c.request(
        "NuAddPersona",
        b"acct",
        &[("TXN", "NuAddPersona"), ("name", "Keyed")],
    )
    .await
    .unwrap();
    let p = c
        .request(
            "NuLoginPersona",
            b"acct",
            &[("TXN", "NuLoginPersona"), ("name", "Keyed")],
        )
        .await
        .unwrap();
    assert_ne!(
        get(&p, "lkey"),
        Some(lkey1.as_str()),
        "NuLoginPersona issues a new lkey"
    );
    let pre = c
        .request("GameSpyPreAuth", b"acct", &[("TXN", "GameSpyPreAuth")])
        .await
        .unwrap();
    let ticket = get(&pre, "ticket").unwrap();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(ticket)
        .unwrap();
    let text = String::from_utf8(decoded).unwrap();
    let parts: Vec<&str> = text.split('|').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], uid.to_string());
    assert_eq!(parts[1], get(&p, "profileId").unwrap());
    assert!(parts[2].len() >= 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_calls_are_error_20_and_unknown_txns_get_an_error() {
    let env = start(test_config()).await;
    add(&env, "ord@test", Some("Orderly")).await;
    add(&env, "other@test", Some("Taken")).await;

    // acct before Hello.
    let mut c = FeslClient::connect(env.fesl).await.unwrap();
    let login = [("TXN", "NuLogin"), ("nuid", "ord@test"), ("password", "pw")];
    assert_eq!(code_of(c.request("NuLogin", b"acct", &login).await), 20);

    let mut c = greeted(env.fesl).await;
    assert_eq!(
        code_of(c.request("x", b"acct", &[("TXN", "NuGetPersonas")]).await),
        20
    );
    assert_eq!(
        code_of(c.request("x", b"acct", &[("TXN", "GameSpyPreAuth")]).await),
        20
    );
    assert_eq!(
        code_of(c.request("x", b"fsys", HELLO).await),
        20,
        "second Hello"
    );
    // Unknown transaction: a proper error that names the TXN, on its command and number.
    let n = c.send(b"acct", &[("TXN", "NuFlyToTheMoon")]).await.unwrap();
    let r = c.recv().await.unwrap();
    assert_eq!((r.number, &r.command), (n, b"acct"));
    assert_eq!(get(&r.pairs, "TXN"), Some("NuFlyToTheMoon"));
    assert_eq!(get(&r.pairs, "errorCode"), Some("99"));
    assert!(
        get(&r.pairs, "localizedMessage")
            .unwrap()
            .contains("NuFlyToTheMoon")
    );

    c.request("NuLogin", b"acct", &login).await.unwrap();
    // PreAuth before a persona is chosen.
    assert_eq!(
        code_of(c.request("x", b"acct", &[("TXN", "GameSpyPreAuth")]).await),
        20
    );
    // Duplicate persona (another user's name, any case) is 160; a bad name is a field error.
    assert_eq!(
        code_of(
            c.request("x", b"acct", &[("TXN", "NuAddPersona"), ("name", "tAkEn")])
                .await
        ),
        160
    );
    let n = c
        .send(b"acct", &[("TXN", "NuAddPersona"), ("name", "no spaces!")])
        .await
        .unwrap();
    let r = c.recv().await.unwrap();
    assert_eq!(r.number, n);
    assert_eq!(get(&r.pairs, "errorCode"), Some("21"));
    assert_eq!(get(&r.pairs, "errorContainer.0.fieldName"), Some("name"));
    // Someone else's persona cannot be chosen.
    assert_eq!(
        code_of(
            c.request(
                "x",
                b"acct",
                &[("TXN", "NuLoginPersona"), ("name", "Taken")]
            )
            .await
        ),
        101
    );
    c.request(
        "x",
        b"acct",
        &[("TXN", "NuLoginPersona"), ("name", "Orderly")],
    )
    .await
    .unwrap();
    c.request("x", b"acct", &[("TXN", "GameSpyPreAuth")])
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Fragmentation, keep-alive, TLS.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_client_messages_are_reassembled() {
    let env = start(test_config()).await;
    add(&env, "frag@test", None).await;
    let mut c = greeted(env.fesl).await;
    let mut text = Vec::new();
    fcodec::write_payload(
        &mut text,
        &[
            ("TXN", "NuLogin"),
            ("returnEncryptedInfo", "1"),
            ("nuid", "frag@test"),
            ("password", "pw"),
            ("macAddr", "$0a1b2c3d4e5f"),
        ],
        true,
    );
    text.pop(); // fragments carry the text without its NUL
    let parts = fcodec::fragment(b"acct", Tag::MultiClient, 2, &text, 16, true);
    assert!(parts.len() > 3);
    for p in &parts {
        // One write per fragment, with a pause: the server must keep partial state.
        c.write_raw(p).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = c.recv().await.unwrap();
    assert_eq!(r.number, 2);
    assert_eq!(get(&r.pairs, "TXN"), Some("NuLogin"));
    assert_eq!(get(&r.pairs, "errorCode"), None, "{:?}", r.pairs);
    assert!(get(&r.pairs, "lkey").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_pings_on_the_interval_and_gp_answers_keep_alives() {
    let mut config = test_config();
    config.fesl.ping_interval = Duration::from_millis(150);
    config.gp.keep_alive = Duration::from_millis(150);
    let env = start(config).await;
    let mut s = TcpStream::connect(env.fesl).await.unwrap();
    s.write_all(&fcodec::write_packet(
        b"fsys",
        Tag::SingleClient,
        1,
        HELLO,
        true,
    ))
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while fesl_messages(&got)
        .iter()
        .filter(|(_, p)| get(p, "TXN") == Some("Ping"))
        .count()
        < 2
    {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let pings: Vec<_> = fesl_messages(&got)
        .into_iter()
        .filter(|(_, p)| get(p, "TXN") == Some("Ping"))
        .collect();
    assert!(
        pings
            .iter()
            .all(|(h, _)| h.number == 0 && &h.command == b"fsys")
    );

    let mut g = TcpStream::connect(env.gp).await.unwrap();
    let mut buf = [0u8; 512];
    let n = g.read(&mut buf).await.unwrap();
    let lc = gcodec::parse_message(&buf[..n]).unwrap();
    assert_eq!(lc[0], ("lc".into(), "1".into()));
    let chal = get(&lc, "challenge").unwrap();
    assert!(chal.len() == 10 && chal.bytes().all(|b| b.is_ascii_uppercase()));
    g.write_all(b"\\ka\\\\final\\").await.unwrap();
    let n = g.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"\\ka\\\\final\\");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fesl_over_tls_with_our_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(gamewire::proxy::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let env = start_with(test_config(), Some(Arc::new(server))).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(gamewire::proxy::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(env.fesl).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(&fcodec::write_packet(
        b"fsys",
        Tag::SingleClient,
        1,
        HELLO,
        true,
    ))
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while fesl_messages(&got).len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let msgs = fesl_messages(&got);
    assert_eq!(get(&msgs[0].1, "TXN"), Some("Hello"));
    assert_eq!(get(&msgs[1].1, "TXN"), Some("MemCheck"));
    assert_eq!(msgs[1].0.number, 0);
}

// ---------------------------------------------------------------------------------------
// GP login.

const VECTOR_TICKET: &str = "MTAwMDAwMXwyMDAwMDAxfER1bW15U2VjcmV0VG9rZW4xMjM=";

fn vector_login() -> Vec<u8> {
    gcodec::write_message(&[
        ("login", ""),
        ("challenge", "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6"),
        ("authtoken", VECTOR_TICKET),
        ("partnerid", "0"),
        ("response", "98eca380e91ea22929e8d97c771bd5c1"),
        ("id", "1"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gp_server_answers_the_published_test_vector() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("gp.db"))
        .await
        .unwrap()
        .with_hash_cost(HashCost::Cheap);
    let u = store.add_user("vec@test", "pw", "Vector").await.unwrap();
    let p = store.add_persona(u.id, "Commander").await.unwrap();
    store
        .store_ticket(
            VECTOR_TICKET,
            u.id,
            p.id,
            "abcdefgh",
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let config = Arc::new(test_config().gp);
    let mut s = GpSession::with_challenge(store.clone(), config.clone(), "vector", "ABCDEFGHIJ");
    assert_eq!(
        s.greeting(),
        b"\\lc\\1\\challenge\\ABCDEFGHIJ\\id\\1\\final\\"
    );
    let mut out = Vec::new();
    assert_eq!(s.feed(&vector_login(), &mut out).await, Flow::Continue);
    let reply = gcodec::parse_message(&out).unwrap();
    assert_eq!(get(&reply, "lc"), Some("2"));
    assert_eq!(
        get(&reply, "proof"),
        Some("b45781b2880edefccf21cb5a3b5b6c93")
    );
    assert_eq!(get(&reply, "userid"), Some(u.id.to_string().as_str()));
    assert_eq!(get(&reply, "profileid"), Some(p.id.to_string().as_str()));
    assert_eq!(get(&reply, "uniquenick"), Some("Commander"));
    assert!(get(&reply, "sesskey").is_some_and(|k| k.parse::<u64>().is_ok()));

    // The ticket is used up: a second session is refused with the pre-auth error, fatally.
    let mut s2 = GpSession::with_challenge(store.clone(), config, "again", "ABCDEFGHIJ");
    let mut out = Vec::new();
    assert_eq!(s2.feed(&vector_login(), &mut out).await, Flow::Close);
    let reply = gcodec::parse_message(&out).unwrap();
    assert_eq!(get(&reply, "err"), Some("266"));
    assert!(get(&reply, "fatal").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gp_rejects_wrong_response_expired_and_reused_tickets_over_sockets() {
    let env = start(test_config()).await;
    let uid = add(&env, "gp@test", Some("Gipper")).await;
    let pid = env.store.personas_of(uid).await.unwrap()[0].id;
    let ticket = env
        .store
        .issue_ticket(uid, pid, "abcdefgh", Duration::from_secs(60))
        .await
        .unwrap();
    let mut log = Vec::new();
    // The wrong password (FESL challenge): 260, and the ticket survives.
    let e = ra3::gp_login(env.gp, "zzzzzzzz", &ticket, &mut log)
        .await
        .unwrap_err();
    assert_eq!(e.gp_code, Some(260));
    let (u, p, nick) = ra3::gp_login(env.gp, "abcdefgh", &ticket, &mut log)
        .await
        .unwrap();
    assert_eq!((u, p, nick.as_str()), (uid, pid, "Gipper"));
    let e = ra3::gp_login(env.gp, "abcdefgh", &ticket, &mut log)
        .await
        .unwrap_err();
    assert_eq!(e.gp_code, Some(266), "single use");
    let expired = env
        .store
        .issue_ticket(uid, pid, "abcdefgh", Duration::ZERO)
        .await
        .unwrap();
    let e = ra3::gp_login(env.gp, "abcdefgh", &expired, &mut log)
        .await
        .unwrap_err();
    assert_eq!(e.gp_code, Some(266), "expired");
    let e = ra3::gp_login(env.gp, "abcdefgh", "bm9wZQ==", &mut log)
        .await
        .unwrap_err();
    assert_eq!(e.gp_code, Some(266), "unknown");
}

// ---------------------------------------------------------------------------------------
// Bad input: each case answered or closed, and the server keeps serving others.

fn header(cmd: &[u8; 4], tag: u8, number: u32, size: u32) -> Vec<u8> {
    let mut h = cmd.to_vec();
    h.extend_from_slice(&((u32::from(tag) << 24) | number).to_be_bytes());
    h.extend_from_slice(&size.to_be_bytes());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fesl_bad_input_gets_an_error_or_a_close_and_others_are_served() {
    let env = start(test_config()).await;
    add(&env, "good@test", Some("Goodie")).await;
    let hello = fcodec::write_packet(b"fsys", Tag::SingleClient, 1, HELLO, true);
    let mut bad_utf8 = header(b"acct", 0xC0, 7, 0);
    bad_utf8.extend_from_slice(b"TXN=NuLogin\nnuid=\xff\xfe\n\0");
    let len = bad_utf8.len() as u32;
    bad_utf8[8..12].copy_from_slice(&len.to_be_bytes());
    let mut too_short = hello.clone();
    too_short[8..12].copy_from_slice(&20u32.to_be_bytes());
    let mut too_long = header(b"fsys", 0xC0, 1, 200);
    too_long.extend_from_slice(b"TXN=Hello\n");
    let huge = header(b"fsys", 0xC0, 1, 100 * 1024 * 1024);
    let mut huge_frag = header(b"acct", 0xF0, 3, 0);
    huge_frag.extend_from_slice(b"data=QUFB\nsize=999999999\n\0");
    let len = huge_frag.len() as u32;
    huge_frag[8..12].copy_from_slice(&len.to_be_bytes());

    // (name, bytes, whether an error reply is required before or instead of a close)
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Expect::Close,
        ),
        ("truncated header", hello[..7].to_vec(), Expect::Close),
        ("size larger than the data", too_long, Expect::Close),
        (
            "size smaller than the data",
            too_short,
            Expect::ErrorThenClose,
        ),
        ("invalid UTF-8", bad_utf8, Expect::ErrorAndOpen),
        ("100 MB header", huge, Expect::Close),
        ("oversized fragment total", huge_frag, Expect::Close),
        (
            "no TXN",
            fcodec::write_packet(b"acct", Tag::SingleClient, 4, &[("a", "b")], true),
            Expect::ErrorAndOpen,
        ),
    ];
    for (name, bytes, expect) in cases {
        let mut s = TcpStream::connect(env.fesl).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        let (got, closed) = read_until_close(&mut s, Duration::from_secs(2)).await;
        let msgs = fesl_messages(&got);
        match expect {
            Expect::Close => assert!(closed, "{name}: not closed"),
            Expect::ErrorThenClose => {
                assert!(closed, "{name}: not closed");
                assert_eq!(get(&msgs[0].1, "errorCode"), Some("99"), "{name}");
            }
            Expect::ErrorAndOpen => {
                assert!(!closed, "{name}: closed");
                assert_eq!(get(&msgs[0].1, "errorCode"), Some("99"), "{name}");
                // The connection still works.
                s.write_all(&hello).await.unwrap();
                let mut buf = [0u8; 1024];
                let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    get(&fesl_messages(&buf[..n])[0].1, "TXN"),
                    Some("Hello"),
                    "{name}"
                );
            }
        }
        assert_flow_works(&env, "good@test").await;
    }

    // A client that opens a packet and never finishes it is cut after the read timeout,
    // while another completes the whole flow meanwhile.
    let mut slow = TcpStream::connect(env.fesl).await.unwrap();
    slow.write_all(&hello[..20]).await.unwrap();
    let started = std::time::Instant::now();
    assert_flow_works(&env, "good@test").await;
    let (_, closed) = read_until_close(&mut slow, Duration::from_secs(3)).await;
    assert!(closed);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

enum Expect {
    Close,
    ErrorThenClose,
    ErrorAndOpen,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gp_bad_input_gets_an_error_or_a_close_and_others_are_served() {
    let env = start(test_config()).await;
    add(&env, "good@test", Some("Goodie")).await;
    let big = {
        let mut v = b"\\login\\".to_vec();
        v.extend(std::iter::repeat_n(b'A', 70_000));
        v
    };
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("garbage", b"hello there\r\n".to_vec(), true),
        (
            "invalid UTF-8",
            b"\\login\\\\challenge\\\xff\\final\\".to_vec(),
            false,
        ),
        (
            "login without fields",
            b"\\login\\\\id\\1\\final\\".to_vec(),
            true,
        ),
        (
            "command before login",
            b"\\getprofile\\\\id\\3\\final\\".to_vec(),
            false,
        ),
        ("no \\final\\ in 70 KB", big, true),
    ];
    for (name, bytes, fatal) in cases {
        let mut s = TcpStream::connect(env.gp).await.unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"\\lc\\1\\"));
        let _ = s.write_all(&bytes).await;
        let (got, closed) = read_until_close(&mut s, Duration::from_secs(1)).await;
        assert!(
            got.starts_with(b"\\error\\\\err\\"),
            "{name}: {:?}",
            String::from_utf8_lossy(&got)
        );
        assert_eq!(closed, fatal, "{name}");
        assert_flow_works(&env, "good@test").await;
    }
}

// ---------------------------------------------------------------------------------------
// The accounts store.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_accounts_personas_and_tickets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/accounts.db");
    let store = Store::open(&path)
        .await
        .unwrap()
        .with_hash_cost(HashCost::Cheap);
    assert!(store.ensure_test_account().await.unwrap());
    assert!(!store.ensure_test_account().await.unwrap());
    let t = store
        .verify_login(
            gamewire::security::TEST_EMAIL,
            gamewire::security::TEST_PASSWORD,
        )
        .await
        .unwrap();
    assert_eq!(t.id, 1_000_001);
    let a = store.add_user("a@x", "one", "A").await.unwrap();
    assert!(matches!(
        store.add_user("A@X", "two", "B").await,
        Err(StoreError::DuplicateEmail(_))
    ));
    assert!(matches!(
        store.verify_login("a@x", "two").await,
        Err(LoginError::WrongPassword)
    ));
    store.set_password("a@x", "two").await.unwrap();
    assert!(matches!(
        store.verify_login("a@x", "one").await,
        Err(LoginError::WrongPassword)
    ));
    store.verify_login("a@x", "two").await.unwrap();
    assert!(matches!(
        store.set_password("zz@x", "p").await,
        Err(StoreError::NoSuchUser(_))
    ));
    let p = store.add_persona(a.id, "Alpha").await.unwrap();
    assert!(p.id > 2_000_000);
    assert!(matches!(
        store.add_persona(a.id, "ALPHA").await,
        Err(StoreError::DuplicatePersona(_))
    ));
    assert!(matches!(
        store.add_persona(a.id, "1x").await,
        Err(StoreError::InvalidPersona(..))
    ));
    let tk = store
        .issue_ticket(a.id, p.id, "abcdefgh", Duration::from_secs(60))
        .await
        .unwrap();
    let g = store.consume_ticket(&tk).await.unwrap();
    assert_eq!(
        (g.user_id, g.persona_id, g.challenge.as_str()),
        (a.id, p.id, "abcdefgh")
    );
    assert!(matches!(
        store.consume_ticket(&tk).await,
        Err(TicketError::Used)
    ));
    let old = store
        .issue_ticket(a.id, p.id, "abcdefgh", Duration::ZERO)
        .await
        .unwrap();
    assert!(matches!(
        store.consume_ticket(&old).await,
        Err(TicketError::Expired)
    ));
    store.disable("a@x").await.unwrap();
    assert!(matches!(
        store.verify_login("a@x", "two").await,
        Err(LoginError::Disabled)
    ));
    // A wrong password never reveals the account's state.
    assert!(matches!(
        store.verify_login("a@x", "bad").await,
        Err(LoginError::WrongPassword)
    ));
    store.close().await;

    // Reopening runs no migration twice and keeps the data; hashes stay argon2id.
    let again = Store::open(&path).await.unwrap();
    let users = again.list_users().await.unwrap();
    assert_eq!(users.len(), 2);
    assert!(users.iter().any(|u| u.email == "a@x" && !u.active));
    again.close().await;
    let raw = std::fs::read(&path).unwrap();
    assert!(
        raw.windows(9).any(|w| w == b"$argon2id")
            || std::fs::metadata(path.with_extension("db-wal")).is_ok()
    );
}

// ---------------------------------------------------------------------------------------
// The accounts CLI through the binary.

fn gw(args: &[&str], cwd: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gamewire"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn accounts_cli_adds_lists_changes_passwords_and_disables() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let out = gw(
        &[
            "accounts",
            "add",
            "--email",
            "cli@test",
            "--password",
            "pw1",
            "--name",
            "Cli User",
        ],
        cwd,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The default database is data/gamewire.db under the working directory.
    assert!(cwd.join("data/gamewire.db").exists());
    let out = gw(
        &[
            "accounts",
            "add",
            "--email",
            "cli@test",
            "--password",
            "x",
            "--name",
            "Dup",
        ],
        cwd,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = gw(&["accounts", "list"], cwd);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("cli@test") && list.contains("Cli User") && list.contains("active"),
        "{list}"
    );
    assert!(
        gw(
            &[
                "accounts",
                "passwd",
                "--email",
                "cli@test",
                "--password",
                "pw2"
            ],
            cwd
        )
        .status
        .success()
    );
    assert!(
        gw(&["accounts", "disable", "--email", "cli@test"], cwd)
            .status
            .success()
    );
    let out = gw(&["accounts", "disable", "--email", "nobody@test"], cwd);
    assert_eq!(out.status.code(), Some(1));
    let list = String::from_utf8_lossy(&gw(&["accounts", "list"], cwd).stdout).into_owned();
    assert!(list.contains("disabled"), "{list}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(&cwd.join("data/gamewire.db")).await.unwrap();
        assert!(matches!(
            store.verify_login("cli@test", "pw1").await,
            Err(LoginError::WrongPassword)
        ));
        assert!(matches!(
            store.verify_login("cli@test", "pw2").await,
            Err(LoginError::Disabled)
        ));
        store.close().await;
    });

    // --db elsewhere.
    let other = cwd.join("elsewhere/x.db");
    let other = other.to_str().unwrap();
    assert!(
        gw(
            &[
                "accounts",
                "--db",
                other,
                "add",
                "--email",
                "o@test",
                "--password",
                "p",
                "--name",
                "O"
            ],
            cwd
        )
        .status
        .success()
    );
    let list =
        String::from_utf8_lossy(&gw(&["accounts", "list", "--db", other], cwd).stdout).into_owned();
    assert!(list.contains("o@test") && !list.contains("cli@test"));
}

#[test]
fn client_cli_runs_the_flow_and_fails_on_the_first_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env = rt.block_on(start(test_config()));
    rt.block_on(add(&env, "bin@test", None));
    let dir = tempfile::tempdir().unwrap();
    let (f, g) = (env.fesl.to_string(), env.gp.to_string());
    let out = gw(
        &[
            "client",
            "fesl",
            "--email",
            "bin@test",
            "--password",
            "pw",
            "--persona",
            "Binary",
            "--fesl",
            &f,
            "--gp",
            &g,
        ],
        dir.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "Hello",
        "MemCheck",
        "NuLogin",
        "NuGetPersonas",
        "NuAddPersona",
        "NuLoginPersona",
        "GameSpyPreAuth",
        "GP login",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("ok") && l.contains(step)),
            "{step}: {text}"
        );
    }
    let out = gw(
        &[
            "client",
            "fesl",
            "--email",
            "bin@test",
            "--password",
            "bad",
            "--fesl",
            &f,
            "--gp",
            &g,
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("NuLogin") && l.contains("122")),
        "{text}"
    );
    assert!(!text.contains("NuGetPersonas"));
    drop(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_core_accepts_any_split_of_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("split.db")).await.unwrap();
    let config = Arc::new(test_config().fesl);
    let input = [
        fcodec::write_packet(b"fsys", Tag::SingleClient, 1, HELLO, true),
        fcodec::write_packet(
            b"fsys",
            Tag::SingleServer,
            0,
            &[("TXN", "MemCheck"), ("result", "")],
            true,
        ),
        fcodec::write_packet(
            b"acct",
            Tag::SingleClient,
            2,
            &[("TXN", "NuGetPersonas")],
            true,
        ),
    ]
    .concat();
    let mut whole = FeslSession::new(store.clone(), config.clone(), "whole");
    let mut a = Vec::new();
    assert_eq!(whole.feed(&input, &mut a).await, Flow::Continue);
    let mut bytewise = FeslSession::new(store.clone(), config, "bytewise");
    let mut b = Vec::new();
    for byte in &input {
        assert_eq!(
            bytewise.feed(std::slice::from_ref(byte), &mut b).await,
            Flow::Continue
        );
    }
    let strip = |v: &[u8]| -> Vec<(String, Option<String>, Option<String>)> {
        fesl_messages(v)
            .into_iter()
            .map(|(h, p)| {
                (
                    format!("{} {}", h.command_str(), h.number),
                    get(&p, "TXN").map(Into::into),
                    get(&p, "errorCode").map(Into::into),
                )
            })
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
    assert_eq!(strip(&a).len(), 3);
    assert_eq!(strip(&a)[2].2.as_deref(), Some("20"));
    assert!(!whole.has_partial() && !bytewise.has_partial());
}
