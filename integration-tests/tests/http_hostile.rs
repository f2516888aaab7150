//! The http source under attack, through the real binary: a wrong token costs only the request head, a crowd
//! of idle and half-sent connections (more than the agent has file descriptors) neither locks out a prompt
//! client nor stays open past its timeout, a client over its rate is answered 429 while another is served,
//! TLS and mutual TLS with certificates made here, and `validate` refusing an exposed port without auth.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditrail_integration_tests::*;

const A: &str = r#"{"event":"user.login","uid":"x-1","time":"2017-02-03T06:54:05Z","user":"alice","success":true}"#;

fn config(dir: &Path, api: u16, port: u16, extra_source: &str) -> String {
    format!(
        r#"
data_dir = "{d}/data"
[api]
address = "127.0.0.1:{api}"
[sources.local]
type = "http"
address = "127.0.0.1:{port}"
{extra_source}
[sinks.out]
type = "file"
inputs = ["local"]
path = "{d}/out/events.ndjson"
"#,
        d = dir.display()
    )
}

/// Open sockets of process `pid`.
fn sockets_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Reads a status line and headers (lower-cased names) from `r`.
fn read_head(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

fn request(body: &str, extra_headers: &str) -> String {
    format!(
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
}

#[test]
fn a_wrong_token_costs_only_the_request_head() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (api, port) = (free_port(), free_port());
    let cfg = config(
        d,
        api,
        port,
        "token = \"right-token\"\nmax_body_bytes = \"16MiB\"",
    );
    let agent = Agent::start(d, &cfg, api);
    const BODY: usize = 10 << 20;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer wrong-token\r\nContent-Length: {BODY}\r\n\r\n"
    )
    .unwrap();
    // The answer comes on the head alone; a server that reads the body first never answers here.
    let mut r = BufReader::new(s.try_clone().unwrap());
    let head = read_head(&mut r);
    // Then the client sends its 10 MiB anyway. What the kernel accepted from the client bounds what the
    // agent can have read: a server that reads the body takes all of it, one that closed refuses the rest
    // (its kernel answers the first segment with a reset).
    let chunk = vec![b'x'; 64 << 10];
    let mut sent = 0;
    while sent < BODY {
        if s.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
        if sent == chunk.len() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    println!("wrong token with a 10 MiB body: the client could send {sent} bytes of it");
    assert!(
        sent < 1 << 20,
        "the agent took {sent} bytes of a refused request's body"
    );
    let (status, headers) = head.expect("401 before the body was sent");
    assert_eq!(status, 401);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "connection" && v == "close"));
    // The connection is closed, not drained: nothing more comes.
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(agent.metric("auditrail_source_http_requests_total", &[("status", "401")]) >= 1.0);
    assert!(!agent.log_text().contains("right-token"));
    drop(agent);
}

fn raise_own_nofile(want: u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
    if l.rlim_cur < want {
        l.rlim_cur = want.min(l.rlim_max);
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) }, 0);
    }
    assert!(
        l.rlim_cur >= want,
        "need RLIMIT_NOFILE of {want}, hard limit is {}",
        l.rlim_max
    );
}

fn crowd_then_prompt_client(extra: &str) {
    const CROWD: usize = 1_100;
    raise_own_nofile(CROWD as u64 + 200);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (api, port) = (free_port(), free_port());
    let cfg = config(
        d,
        api,
        port,
        &format!("header_read_timeout = \"2s\"\nidle_timeout = \"2s\"\n{extra}"),
    );
    // The agent runs with the common default of 1,024 descriptors: the crowd is larger.
    let agent = Agent::start_with(d, &cfg, api, |c| unsafe {
        c.pre_exec(|| {
            let l = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    });
    let pid = agent.pid();
    let baseline = sockets_of(pid);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut crowd = Vec::new();
    for i in 0..CROWD {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            continue;
        };
        if i % 2 == 0 {
            // Half-sent: a request head that never ends (slowloris).
            let _ = s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le");
        }
        crowd.push(s);
    }
    let connected = crowd.len();
    // A well-behaved client is served promptly.
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request(A, "Content-Type: application/json\r\n").as_bytes())
        .unwrap();
    let (status, _) = read_head(&mut BufReader::new(s)).expect("an answer to the prompt client");
    let took = started.elapsed();
    println!("{connected} idle/half-sent connections: prompt client answered {status} in {took:?}, agent holds {} sockets", sockets_of(pid));
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_secs(1),
        "the prompt client waited {took:?}"
    );
    // Past the timeouts, the crowd is gone from the agent (the clients still hold their ends).
    wait_for(Duration::from_secs(10), "idle connections closed", || {
        sockets_of(pid) <= baseline + 2
    });
    let shed = agent.metric(
        "auditrail_source_http_connections_shed_total",
        &[("source", "local")],
    );
    println!(
        "shed {shed} connections; sockets now {} (baseline {baseline})",
        sockets_of(pid)
    );
    assert!(shed >= (connected - 1024) as f64, "shed {shed}");
    drop(crowd);
    assert!(agent.terminate(Duration::from_secs(30)).success());
}

#[test]
fn idle_and_half_sent_connections_at_the_connection_cap() {
    crowd_then_prompt_client("");
}

#[test]
fn idle_and_half_sent_connections_beyond_the_descriptor_limit() {
    // A cap above the descriptor limit: room must come from shedding when accept fails with EMFILE.
    crowd_then_prompt_client("max_connections = 5000");
}

fn post_from(local: &str, port: u16) -> (u16, Vec<(String, String)>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{local}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    let remote: SocketAddr = ([127, 0, 0, 1], port).into();
    socket.connect(&remote.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request(A, "").as_bytes()).unwrap();
    read_head(&mut BufReader::new(s)).unwrap()
}

#[test]
fn a_client_over_its_rate_gets_429_while_another_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (api, port) = (free_port(), free_port());
    let cfg = config(d, api, port, "rate_limit = { per_second = 1, burst = 5 }");
    let agent = Agent::start(d, &cfg, api);
    let statuses: Vec<u16> = (0..8).map(|_| post_from("127.0.0.1", port).0).collect();
    assert_eq!(&statuses[..5], &[200; 5], "{statuses:?}");
    assert!(statuses[5..].contains(&429), "{statuses:?}");
    let (status, headers) = post_from("127.0.0.1", port);
    assert_eq!(status, 429);
    let retry: u64 = headers
        .iter()
        .find(|(k, _)| k == "retry-after")
        .expect("Retry-After")
        .1
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Another address has its own bucket.
    assert_eq!(post_from("127.0.0.2", port).0, 200);
    drop(agent);
}

struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = p.self_signed(&ca_key).unwrap();
        Pki { ca, ca_key }
    }

    fn issue(&self, names: &[&str]) -> (rcgen::Certificate, rcgen::KeyPair) {
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (cert, key)
    }
}

fn tls_post(
    port: u16,
    ca: &rcgen::Certificate,
    client: Option<&(rcgen::Certificate, rcgen::KeyPair)>,
) -> Result<u16, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap(),
    };
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(request(A, "").as_bytes())
        .map_err(|e| e.to_string())?;
    let (status, _) = read_head(&mut BufReader::new(tls)).map_err(|e| e.to_string())?;
    if status == 0 {
        return Err("no answer".into());
    }
    Ok(status)
}

fn write_pem(dir: &Path, name: &str, pem: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, pem).unwrap();
    p.display().to_string()
}

#[test]
fn tls_and_mutual_tls_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new("auditrail test CA");
    let (server, server_key) = pki.issue(&["localhost"]);
    let cert = write_pem(d, "server.pem", &server.pem());
    let key = write_pem(d, "server.key", &server_key.serialize_pem());
    let ca = write_pem(d, "ca.pem", &pki.ca.pem());

    // Server TLS only.
    let (api, port) = (free_port(), free_port());
    let cfg = config(
        d,
        api,
        port,
        &format!("tls = {{ cert_file = \"{cert}\", key_file = \"{key}\" }}"),
    );
    let agent = Agent::start(d, &cfg, api);
    assert_eq!(tls_post(port, &pki.ca, None), Ok(200));
    // Plain HTTP on the TLS port gets no answer.
    assert_ne!(
        http("POST", port, "/v1/events", &[], A.as_bytes())
            .map(|r| r.0)
            .unwrap_or(0),
        200
    );
    assert!(agent.terminate(Duration::from_secs(30)).success());

    // Mutual TLS: only certificates from the client CA are served.
    let (api, port) = (free_port(), free_port());
    let cfg = config(
        d,
        api,
        port,
        &format!(
            "tls = {{ cert_file = \"{cert}\", key_file = \"{key}\", client_ca_file = \"{ca}\" }}"
        ),
    );
    let agent = Agent::start(d, &cfg, api);
    let good = pki.issue(&["client"]);
    let other = Pki::new("another CA");
    let stranger = other.issue(&["client"]);
    assert_eq!(tls_post(port, &pki.ca, Some(&good)), Ok(200));
    let without = tls_post(port, &pki.ca, None);
    assert!(
        without.is_err(),
        "a client without a certificate was served: {without:?}"
    );
    let foreign = tls_post(port, &pki.ca, Some(&stranger));
    assert!(
        foreign.is_err(),
        "a certificate from another CA was served: {foreign:?}"
    );
    wait_for(Duration::from_secs(10), "the events", || {
        line_count(&d.join("out")) >= 1
    });
    assert!(agent.terminate(Duration::from_secs(30)).success());
}

#[test]
fn validate_refuses_an_exposed_port_without_auth() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |extra: &str| {
        let cfg = config(d, 9, 8686, extra).replace("127.0.0.1:8686", "0.0.0.0:8686");
        let path = d.join("v.toml");
        std::fs::write(&path, cfg).unwrap();
        std::process::Command::new(binary())
            .args(["validate", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = run("");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("allow_unauthenticated") && stderr.contains("0.0.0.0:8686"),
        "{stderr}"
    );
    assert!(run("allow_unauthenticated = true").status.success());
    let out = run("token = \"${AUDITRAIL_TEST_UNSET_TOKEN:-tok-value-9}\"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("tok-value-9"));
}
