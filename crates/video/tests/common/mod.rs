pub mod webcam;
