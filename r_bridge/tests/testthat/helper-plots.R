# What a plot drew, read from the display list of a null PDF device (no image comparison): one
# element per graphics call, named by its C entry point ("C_plotXY" for points() and lines(),
# "C_abline", ...), holding the call's arguments (for C_plotXY: xy, type, pch, lty, col, ...).
drawn <- function(expr) {
  grDevices::pdf(NULL)
  on.exit(grDevices::dev.off())
  grDevices::dev.control("enable")
  force(expr)
  calls <- grDevices::recordPlot()[[1]]
  stats::setNames(lapply(calls, function(e) as.list(e[[2]])[-1]),
                  vapply(calls, function(e) e[[2]][[1]]$name, ""))
}
