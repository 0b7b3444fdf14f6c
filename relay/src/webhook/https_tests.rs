//! The webhook client over real TLS on 127.0.0.1: a receiver whose certificate chains to
//! a trusted root gets the request; one that does not is refused before anything is sent.

use super::http::{Outcome, Sender};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// An HTTPS receiver with a certificate from `ca`; reports each request's body.
async fn tls_receiver(ca: &assist_certs::Ca) -> (String, mpsc::UnboundedReceiver<Vec<u8>>) {
    let issued = ca.issue_server("localhost", &[]).unwrap();
    let chain = assist_certs::certs_from_pem(&issued.cert_pem).unwrap();
    let key = assist_certs::key_from_pem(&issued.key_pem).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        use http_body_util::BodyExt;
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes().to_vec())
                            .unwrap_or_default();
                        let _ = tx.send(body);
                        let mut response = hyper::Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = hyper::StatusCode::NO_CONTENT;
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn https_reaches_a_receiver_with_a_trusted_certificate() {
    let ca = assist_certs::Ca::generate("webhook test").unwrap();
    let (url, mut rx) = tls_receiver(&ca).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(assist_certs::certs_from_pem(ca.cert_pem()).unwrap().remove(0)).unwrap();
    let sender = Sender::with_roots(Duration::from_secs(10), roots);
    let outcome = sender.post(&url, &[("x-assist-event", "session.requested".into())], "{}".into()).await;
    assert_eq!(outcome, Outcome::Status(204));
    assert!(outcome.is_success());
    assert_eq!(rx.recv().await.unwrap(), b"{}");
}

#[tokio::test]
async fn https_to_an_untrusted_certificate_fails_and_sends_nothing() {
    let ca = assist_certs::Ca::generate("unknown to the system").unwrap();
    let (url, mut rx) = tls_receiver(&ca).await;
    // The system's roots (or none, on a machine without them): either way not this CA.
    let outcome = Sender::new(Duration::from_secs(10)).post(&url, &[], "{}".into()).await;
    let Outcome::Error(e) = outcome else { panic!("delivered to an untrusted receiver: {outcome:?}") };
    assert!(e.contains("certificate"), "{e}");
    assert!(rx.try_recv().is_err(), "no request reached the receiver");
}
