//! The pipe client: input to the socket and the socket to output at the same time,
//! binary-exact, like `nc`. At end of input it half-closes the connection and finishes once the
//! server has sent everything back and closed its side. A server that closes before the input
//! ends, or echoes back fewer bytes than it was sent, is reported as an error.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::ClientError;
use crate::Endpoint;
use crate::connect::BoxStream;

/// Copy buffer size: large copies take few system calls.
const COPY_BUF: usize = 256 * 1024;

/// Bytes moved each way by [`pipe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeSummary {
    pub sent: u64,
    pub received: u64,
}

/// Copies `input` to the stream and the stream to `output` concurrently until both directions
/// are done.
pub async fn pipe<R, W>(
    stream: BoxStream,
    endpoint: &Endpoint,
    input: R,
    mut output: W,
) -> Result<PipeSummary, ClientError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut from_server, mut to_server) = tokio::io::split(stream);
    let upload = async {
        let mut input = BufReader::with_capacity(COPY_BUF, input);
        let sent = tokio::io::copy_buf(&mut input, &mut to_server).await;
        // Half-close so the server knows we are done and can finish its echo.
        let closed = to_server.shutdown().await;
        let sent = sent.map_err(|e| classify(endpoint, e, "cannot read input"))?;
        closed.map_err(|e| ClientError::lost(endpoint, &e))?;
        Ok::<u64, ClientError>(sent)
    };
    let download = async {
        let mut from_server = BufReader::with_capacity(COPY_BUF, &mut from_server);
        let received = tokio::io::copy_buf(&mut from_server, &mut output).await;
        let received = received.map_err(|e| classify(endpoint, e, "cannot write output"))?;
        output
            .flush()
            .await
            .map_err(|e| ClientError::local("cannot write output", &e))?;
        Ok::<u64, ClientError>(received)
    };
    tokio::pin!(upload, download);
    let mut sent = None;
    loop {
        tokio::select! {
            // Upload first: once our half-close is out, the server's EOF may follow at once.
            biased;
            result = &mut upload, if sent.is_none() => sent = Some(result?),
            result = &mut download => {
                let received = result?;
                let Some(sent) = sent else {
                    return Err(ClientError::Lost {
                        endpoint: endpoint.clone(),
                        problem: format!(
                            "the server closed the connection before the end of the input \
                             ({received} bytes came back)"
                        ),
                    });
                };
                if received != sent {
                    return Err(ClientError::Lost {
                        endpoint: endpoint.clone(),
                        problem: format!(
                            "the server closed the connection after echoing {received} of \
                             {sent} bytes"
                        ),
                    });
                }
                return Ok(PipeSummary { sent, received });
            }
        }
    }
}

/// `copy` does not say which side failed; socket errors have kinds that local files and pipes
/// rarely produce.
fn classify(endpoint: &Endpoint, err: std::io::Error, local_context: &'static str) -> ClientError {
    use std::io::ErrorKind::*;
    match err.kind() {
        ConnectionReset | ConnectionAborted | NotConnected | UnexpectedEof | TimedOut => {
            ClientError::lost(endpoint, &err)
        }
        BrokenPipe if local_context == "cannot read input" => ClientError::lost(endpoint, &err),
        _ => ClientError::local(local_context, &err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{EchoOptions, echo_stream};
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn copies_binary_both_ways_and_ends_after_the_echo() {
        let (client, mut server) = tokio::net::UnixStream::pair().unwrap();
        tokio::spawn(async move {
            echo_stream(
                &mut server,
                &EchoOptions::default(),
                &CancellationToken::new(),
            )
            .await
        });
        let input: Vec<u8> = (0..5_000_000u32).map(|i| (i % 256) as u8).collect();
        let mut output = Vec::new();
        let endpoint: Endpoint = "unix:pair".parse().unwrap();
        let summary = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            pipe(Box::new(client), &endpoint, &input[..], &mut output),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            summary,
            PipeSummary {
                sent: input.len() as u64,
                received: input.len() as u64
            }
        );
        assert!(output == input);
    }
}
