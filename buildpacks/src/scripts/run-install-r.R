# kiln: run a repository's install.R so that a failed install fails the build.
# R's install.packages() only warns when a package cannot be found, downloaded or compiled, and
# Rscript then exits 0; with warn = 2 every such warning is an error.
args <- commandArgs(trailingOnly = TRUE)
options(warn = 2)
Sys.setenv(R_REMOTES_NO_ERRORS_FROM_WARNINGS = "false")
source(args[[1]], echo = TRUE, max.deparse.length = Inf)
