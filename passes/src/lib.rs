//! The graph IR of fhec, its f64 reference interpreter and the rewrite passes.

pub mod interpret;
pub mod ir;

pub mod assign_levels;
pub mod cluster;
pub mod cluster_joint;
pub mod fold_identity;
pub mod fuse_bn_poly;
pub mod fuse_conv_bn;
pub mod fuse_linear_bn;
pub mod fuse_residual_poly;
pub mod pass;
pub mod ranges;
pub mod redistribute_leading;
pub mod redistribute_pool;
pub mod scale_factors;
pub mod select_params;
#[cfg(test)]
mod testgraphs;
