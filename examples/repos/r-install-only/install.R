install.packages("tinypkg")
