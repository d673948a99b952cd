//! The camera without a camera: recorded device descriptions (`v4l2-ctl --list-formats-ext`
//! text) decide what a call asks for, and a recorded camera hands out pictures in YUYV, NV12
//! and Motion-JPEG (made here from the test picture) through the same `Camera` source a call
//! reads. What is not run here: the ioctls themselves (this machine's kernel has no V4L2 and
//! no camera); `linuxvideo` does them.

use extrasafe_video::camera::plan::parse_v4l2_ctl;
use extrasafe_video::camera::{choose, Camera, Choice, PixelCode, PlanError, Recorded};
use extrasafe_video::{psnr_y, Frame, TestPattern, VideoSource};

mod common;
use common::webcam::to_webcam_mjpeg;

fn recorded(name: &str) -> extrasafe_video::camera::DeviceDescription {
    let path = format!("{}/tests/cameras/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    parse_v4l2_ctl(name, &text)
}

fn choice(code: PixelCode, width: u32, height: u32, fps: u32) -> Choice {
    Choice {
        code,
        width,
        height,
        fps,
    }
}

#[test]
fn a_call_asks_each_recorded_camera_for_what_suits_it() {
    let laptop = recorded("integrated-5986-212b.txt");
    assert_eq!(laptop.formats.len(), 2);
    assert_eq!(laptop.formats[1].sizes[0].fps, vec![10.0]);
    // 720p at 30 exists only in Motion-JPEG: taken over raw YUYV at 10.
    assert_eq!(
        choose(&laptop, 1280, 720, 30).unwrap(),
        choice(PixelCode::Mjpeg, 1280, 720, 30)
    );
    // Where raw comes at full speed, raw (no decoding).
    assert_eq!(
        choose(&laptop, 640, 480, 30).unwrap(),
        choice(PixelCode::Yuyv, 640, 480, 30)
    );
    assert_eq!(
        choose(&laptop, 640, 360, 30).unwrap(),
        choice(PixelCode::Yuyv, 640, 360, 30)
    );
    // More than it has: its largest at full speed.
    assert_eq!(
        choose(&laptop, 1920, 1080, 30).unwrap(),
        choice(PixelCode::Mjpeg, 1280, 720, 30)
    );
    // A low rate asked: raw 720p at 10 is then as good, and cheaper.
    assert_eq!(
        choose(&laptop, 1280, 720, 10).unwrap(),
        choice(PixelCode::Yuyv, 1280, 720, 10)
    );

    let sensor = recorded("sensor-stepwise.txt");
    assert_eq!(
        choose(&sensor, 1280, 720, 30).unwrap(),
        choice(PixelCode::Nv12, 1280, 720, 30)
    );

    let h264 = recorded("h264-only.txt");
    let err = choose(&h264, 1280, 720, 30).unwrap_err();
    assert!(
        matches!(err, PlanError::NoReadableFormat(ref f) if f == "H264"),
        "{err}"
    );
    assert!(err.to_string().contains("H264"));
}

/// I420 to YUYV, as a camera would send the picture.
fn to_yuyv(f: &Frame) -> Vec<u8> {
    let (w, h) = (f.width as usize, f.height as usize);
    let mut out = Vec::with_capacity(w * h * 2);
    for row in 0..h {
        for x in (0..w).step_by(2) {
            let c = (row / 2) * (w / 2) + x / 2;
            out.extend_from_slice(&[
                f.y()[row * w + x],
                f.u()[c],
                f.y()[row * w + x + 1],
                f.v()[c],
            ]);
        }
    }
    out
}

/// I420 to NV12.
fn to_nv12(f: &Frame) -> Vec<u8> {
    let mut out = f.y().to_vec();
    for (u, v) in f.u().iter().zip(f.v()) {
        out.extend_from_slice(&[*u, *v]);
    }
    out
}

#[test]
fn pictures_in_every_read_format_come_out_as_the_camera_saw_them() {
    let laptop = recorded("integrated-5986-212b.txt");
    for (w, h, fps, code) in [
        (640, 480, 30, PixelCode::Yuyv),
        (1280, 720, 30, PixelCode::Mjpeg),
    ] {
        let mut pattern = TestPattern::new(w, h, 30);
        let seen: Vec<Frame> = (0..3)
            .map(|i| pattern.next_frame(i).unwrap().unwrap())
            .collect();
        let pictures = seen
            .iter()
            .map(|f| {
                (
                    code,
                    match code {
                        PixelCode::Yuyv => to_yuyv(f),
                        _ => to_webcam_mjpeg(f),
                    },
                )
            })
            .collect();
        let mut cam =
            Camera::with_capture(Box::new(Recorded::new(laptop.clone(), pictures)), w, h, fps)
                .unwrap();
        assert_eq!(cam.size(), (w, h));
        assert_eq!(cam.fps(), 30);
        for (i, want) in seen.iter().enumerate() {
            let got = cam.next_frame(i as u64).unwrap().unwrap();
            let q = psnr_y(want, &got);
            // YUYV carries luma as it is; Motion-JPEG at quality 92 loses a little.
            let floor = if code == PixelCode::Yuyv { 90.0 } else { 38.0 };
            assert!(q >= floor, "{code} {w}x{h} picture {i}: PSNR {q:.1} dB");
        }
    }
    // NV12 from the stepwise sensor.
    let sensor = recorded("sensor-stepwise.txt");
    let mut pattern = TestPattern::new(1280, 720, 30);
    let want = pattern.next_frame(0).unwrap().unwrap();
    let mut cam = Camera::with_capture(
        Box::new(Recorded::new(
            sensor,
            vec![(PixelCode::Nv12, to_nv12(&want))],
        )),
        1280,
        720,
        30,
    )
    .unwrap();
    let got = cam.next_frame(0).unwrap().unwrap();
    assert_eq!(
        got.data, want.data,
        "NV12 is I420 with its chroma interleaved"
    );
}

#[test]
fn a_damaged_picture_is_skipped_and_a_camera_that_sends_only_damage_fails() {
    let laptop = recorded("integrated-5986-212b.txt");
    let mut pattern = TestPattern::new(1280, 720, 30);
    let good = to_webcam_mjpeg(&pattern.next_frame(0).unwrap().unwrap());
    let mut cut = good.clone();
    cut.truncate(good.len() / 3);
    let mut cam = Camera::with_capture(
        Box::new(Recorded::new(
            laptop.clone(),
            vec![(PixelCode::Mjpeg, cut.clone()), (PixelCode::Mjpeg, good)],
        )),
        1280,
        720,
        30,
    )
    .unwrap();
    // The damaged one is passed over; the next is shown.
    assert!(cam.next_frame(0).unwrap().is_some());
    let mut broken = Camera::with_capture(
        Box::new(Recorded::new(laptop, vec![(PixelCode::Mjpeg, cut)])),
        1280,
        720,
        30,
    )
    .unwrap();
    let err = broken.next_frame(0).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("Motion-JPEG"), "{err}");
}

#[test]
fn a_missing_camera_is_a_sentence() {
    let err = Camera::open("/dev/extrasafe-no-such-camera", 640, 480, 30)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot open /dev/extrasafe-no-such-camera"),
        "{err}"
    );
}

/// A camera that sends whole 16-pixel blocks (1280x736 for 1280x720) is cut to the size
/// agreed; a much larger or a smaller picture is refused.
#[test]
fn a_motion_jpeg_picture_a_block_too_tall_is_cut_to_size() {
    let mut tall = TestPattern::new(1280, 736, 30);
    let f = tall.next_frame(0).unwrap().unwrap();
    let jpeg = to_webcam_mjpeg(&f);
    let got = extrasafe_video::camera::mjpeg_to_i420(&jpeg, 1280, 720).unwrap();
    assert_eq!((got.width, got.height), (1280, 720));
    let top = Frame {
        width: 1280,
        height: 720,
        data: {
            let mut d = f.y()[..1280 * 720].to_vec();
            d.extend_from_slice(&got.data[1280 * 720..]);
            d
        },
    };
    assert!(psnr_y(&top, &got) > 38.0);
    assert!(extrasafe_video::camera::mjpeg_to_i420(&jpeg, 1280, 760).is_err());
    assert!(extrasafe_video::camera::mjpeg_to_i420(&jpeg, 640, 360).is_err());
}
