//! Body types and bounded buffering.
//!
//! A request body is buffered (so it can be replayed on retry) only up to a limit; past it,
//! the bytes already read are chained in front of the rest of the stream and the body goes
//! once, untouched. The same helper reads upstream error bodies to find the API error `Code`.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, BodyStream, Full, StreamBody, combinators::UnsyncBoxBody};

/// Errors carried by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type used everywhere in the proxy.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Boxes any body.
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A body read up to a limit.
#[derive(Debug)]
pub enum Buffered {
    /// The whole body, within the limit.
    Complete(Bytes),
    /// Over the limit: the bytes read so far followed by the rest, to be streamed once.
    TooLarge(ProxyBody),
}

/// Reads `body` until it ends or exceeds `limit` bytes. Trailers of a complete body are dropped
/// (the OpenAPI does not use them).
pub async fn buffer_up_to<B>(body: B, limit: usize) -> Result<Buffered, BoxError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let mut body = body;
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Into::into)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        if buf.len() > limit {
            let prefix =
                futures_util::stream::once(
                    async move { Ok::<_, BoxError>(Frame::data(buf.freeze())) },
                );
            let rest = BodyStream::new(body.map_err(Into::into));
            return Ok(Buffered::TooLarge(
                StreamBody::new(prefix.chain(rest)).boxed_unsync(),
            ));
        }
    }
    Ok(Buffered::Complete(buf.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_bodies_are_complete() {
        let b = buffer_up_to(full("hello"), 5).await.unwrap();
        assert!(matches!(b, Buffered::Complete(ref x) if x == "hello"));
    }

    #[tokio::test]
    async fn large_bodies_keep_every_byte() {
        let chunks: Vec<Result<Frame<Bytes>, BoxError>> = (0..10)
            .map(|i| Ok(Frame::data(Bytes::from(vec![b'a' + i; 100]))))
            .collect();
        let body = StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync();
        let Buffered::TooLarge(rest) = buffer_up_to(body, 250).await.unwrap() else {
            panic!("expected TooLarge");
        };
        let all = rest.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), 1000);
        assert_eq!(&all[..100], &[b'a'; 100][..]);
        assert_eq!(&all[900..], &[b'j'; 100][..]);
    }
}
