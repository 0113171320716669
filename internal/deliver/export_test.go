package deliver

// BufferMax is bufferMax for the external tests: the largest object
// written with one PUT.
const BufferMax = bufferMax
