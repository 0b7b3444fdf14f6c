//! The conformance suite against a real S3 API: moto's S3 server (a Python package,
//! `moto[server]`, which `scripts/test` installs in a virtualenv and names in
//! `ASSIST_MOTO_SERVER`; else `moto_server` on the PATH) on a loopback port, reached through
//! object_store's S3 client exactly as `--recordings s3://BUCKET/PREFIX` reaches a bucket.
//!
//! Without it the test fails with that reason; it never skips.

use super::ObjectRecordings;
use super::conformance::suite;
use object_store::path::Path as ObjectPath;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// moto's server on a free loopback port, killed when dropped.
struct Moto {
    child: Child,
    addr: SocketAddr,
}

impl Moto {
    fn start() -> Self {
        let addr =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("a free port");
        let program = std::env::var_os("ASSIST_MOTO_SERVER").unwrap_or_else(|| "moto_server".into());
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {program:?} ({e}); scripts/test installs moto[server] and sets ASSIST_MOTO_SERVER")
            });
        let moto = Moto { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen on {addr} within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// Creates a bucket with a plain request (moto accepts unsigned ones); object_store
    /// has no call for it. Returns the HTTP status line.
    fn create_bucket(&self, bucket: &str) -> String {
        let mut stream = TcpStream::connect(self.addr).expect("connect to moto");
        let request = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.lines().next().unwrap_or_default().to_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn s3_bucket_conforms() {
    let moto = Moto::start();
    let status = moto.create_bucket("assist-recordings");
    assert!(status.contains(" 200"), "creating the bucket: {status}");
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(format!("http://{}", moto.addr))
        .with_allow_http(true)
        .with_bucket_name("assist-recordings")
        .with_region("us-east-1")
        .with_access_key_id("assist-test")
        .with_secret_access_key("assist-test")
        .build()
        .expect("an S3 client");
    let store =
        ObjectRecordings::new(Arc::new(s3), ObjectPath::from("relay-a"), "s3://assist-recordings/relay-a");
    suite(Arc::new(store), None).await;
}
