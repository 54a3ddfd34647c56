//! placeholder replaced by the template engine
