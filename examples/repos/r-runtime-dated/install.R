install.packages("tinydep")
install.packages("tinyc")
