hello <- function() "hello from R"
