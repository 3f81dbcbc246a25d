//! Property tests of parameter rendering: no value, whatever its characters, can change the
//! structure of the statement Redshift receives.

mod rendering;
