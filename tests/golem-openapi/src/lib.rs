//! Empty: this package exists to fetch golem-client 1.1.0.
