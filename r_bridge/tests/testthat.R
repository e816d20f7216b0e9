library(testthat)
library(dfmr)

test_check("dfmr")
