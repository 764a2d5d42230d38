//! Length-prefixed frames: a big-endian i32 size followed by that many bytes.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a frame could not be read. Every variant ends the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection cleanly between frames.
    #[error("connection closed")]
    Closed,
    /// Negative or zero length prefix.
    #[error("invalid frame length {0}")]
    InvalidLength(i32),
    /// Length prefix above the configured maximum (`socket.request.max.bytes`).
    #[error("frame of {len} bytes exceeds socket.request.max.bytes ({max})")]
    TooLarge {
        /// Announced length.
        len: i32,
        /// The limit.
        max: usize,
    },
    /// I/O failure, including EOF in the middle of a frame.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame; the length is checked before any buffer is allocated for it.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Bytes, FrameError> {
    let len = read_frame_len(r, max).await?;
    read_frame_body(r, len).await
}

/// Reads and checks a frame's length prefix (the first half of [`read_frame`], for a caller
/// that reserves memory for the body before reading it).
pub async fn read_frame_len<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<usize, FrameError> {
    let mut len_buf = [0u8; 4];
    match r.read_exact(&mut len_buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = i32::from_be_bytes(len_buf);
    if len <= 0 {
        return Err(FrameError::InvalidLength(len));
    }
    let n = usize::try_from(len).map_err(|_| FrameError::InvalidLength(len))?;
    if n > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(n)
}

/// Reads a frame body of `len` bytes (after [`read_frame_len`]).
pub async fn read_frame_body<R: AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
) -> Result<Bytes, FrameError> {
    // Read into the buffer's spare capacity, never zero-filled first: a zeroed allocation
    // this size comes from fresh pages (a page fault per 4 KiB of every request), and a
    // filled one is resident at once even while its sender trickles; this way memory the
    // allocator already has is reused, and pages become resident only as bytes arrive.
    let mut buf = BytesMut::with_capacity(len);
    while buf.len() < len {
        let want = len - buf.len();
        if r.read_buf(&mut (&mut buf).limit(want)).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_and_rejects() {
        let mut data: &[u8] = &[0, 0, 0, 3, 1, 2, 3];
        assert_eq!(&read_frame(&mut data, 10).await.unwrap()[..], &[1, 2, 3]);
        let mut neg: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut neg, 10).await,
            Err(FrameError::InvalidLength(-1))
        ));
        let mut zero: &[u8] = &[0, 0, 0, 0];
        assert!(matches!(
            read_frame(&mut zero, 10).await,
            Err(FrameError::InvalidLength(0))
        ));
        let mut big: &[u8] = &[0x7f, 0, 0, 0];
        assert!(matches!(
            read_frame(&mut big, 10).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut trunc: &[u8] = &[0, 0, 0, 5, 1];
        assert!(matches!(
            read_frame(&mut trunc, 10).await,
            Err(FrameError::Io(_))
        ));
        let mut empty: &[u8] = &[];
        assert!(matches!(
            read_frame(&mut empty, 10).await,
            Err(FrameError::Closed)
        ));
    }
}
