# kiln: install a repository's R packages so that a failed install fails the build, reusing the
# packages earlier builds of this repository installed.
#
#   Rscript install-r-packages.R install.R    source the repository's install.R
#   Rscript install-r-packages.R --local      install the package in the working folder and its
#                                             dependencies (a DESCRIPTION), as repo2docker does
#
# R's install.packages() only warns when a package cannot be found, downloaded or compiled, and
# Rscript then exits 0: with warn = 2 every such warning is an error.
#
# With KILN_R_CACHE set (a cache kept for this repository only), the packages installed from the
# CRAN snapshot are packed there afterwards as binary packages, in a CRAN-like repository per R
# version, platform and snapshot; the next build lists it before the snapshot, so that the same
# version is installed from it (no download, no compiling), and a newer one still comes from the
# snapshot.
args <- commandArgs(trailingOnly = TRUE)
options(warn = 2)
Sys.setenv(R_REMOTES_NO_ERRORS_FROM_WARNINGS = "false")

snapshot <- getOption("repos")[["CRAN"]]
cache <- Sys.getenv("KILN_R_CACHE")
contrib <- NULL
if (nzchar(cache) && !is.null(snapshot)) {
    version <- paste(R.version$major, strsplit(R.version$minor, ".", fixed = TRUE)[[1]][1], sep = ".")
    where <- gsub("[^A-Za-z0-9.-]+", "_", snapshot)
    root <- file.path(cache, paste0(R.version$platform, "-R", version), where)
    contrib <- file.path(root, "src", "contrib")
    dir.create(contrib, recursive = TRUE, showWarnings = FALSE)
    if (!file.exists(file.path(contrib, "PACKAGES"))) file.create(file.path(contrib, "PACKAGES"))
    cached <- tryCatch(nrow(available.packages(repos = paste0("file://", root))),
                       error = function(e) NA)
    if (is.na(cached)) {
        message("kiln: the R package cache cannot be read; installing without it")
        contrib <- NULL
    } else {
        message(sprintf("kiln: %d R packages kept from earlier builds of this repository", cached))
        options(repos = c(kiln_cache = paste0("file://", root), getOption("repos")))
    }
}

if (identical(args[[1]], "--local")) {
    remotes::install_local(".", upgrade = "never")
} else {
    source(args[[1]], echo = TRUE, max.deparse.length = Inf)
}

if (!is.null(contrib)) {
    library <- Sys.getenv("R_LIBS_USER")
    offered <- available.packages(repos = snapshot)
    installed <- installed.packages(lib.loc = library)
    added <- 0L
    home <- setwd(library) # utils::tar stores the paths it is given
    for (i in seq_len(nrow(installed))) {
        name <- installed[i, "Package"]
        version <- installed[i, "Version"]
        # Only what the snapshot offers at that version: a package from elsewhere (a local
        # DESCRIPTION, GitHub) is not passed off as the snapshot's.
        if (!name %in% rownames(offered) || offered[name, "Version"] != version) next
        tarball <- file.path(contrib, sprintf("%s_%s.tar.gz", name, version))
        if (file.exists(tarball)) next
        partial <- paste0(tarball, ".partial")
        if (utils::tar(partial, files = name, compression = "gzip", tar = "internal") != 0) next
        file.rename(partial, tarball)
        added <- added + 1L
    }
    setwd(home)
    if (added > 0L) {
        tools::write_PACKAGES(contrib, type = "source")
        message(sprintf("kiln: kept %d more R packages for the next build", added))
    }
}
