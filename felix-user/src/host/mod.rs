//! The host's kernel outside BPF: interface events ([`links`]), felix's routes ([`kroutes`]),
//! `cali*` sysctls ([`ifsysctl`]), the node's address ([`autodetect`]) and its Node resource
//! ([`node_register`]).

pub mod autodetect;
pub mod ifsysctl;
pub mod kroutes;
pub mod links;
pub mod node_register;
