install.packages("tinydep")
