import time, numpy as np
from particlesnn.heightmap import HeightMap
from particlesnn import preprocess as pp
rng=np.random.default_rng(0)
n=2048
yy,xx=np.mgrid[:n,:n]
z=0.01*xx+0.02*yy+0.1*rng.standard_normal((n,n))+rng.standard_normal(n)[:,None]
for i in range(200):
    cy,cx=rng.integers(0,n,2); z[max(cy-8,0):cy+8,max(cx-8,0):cx+8]+=20
hm=HeightMap(z)
for f,args in [('level_plane',(z,)),('level_lines',(z,)),('clip_spikes',(z,)),('protrusion_mask',(z,)),('detect_polarity',(z,))]:
    t=time.perf_counter(); getattr(pp,f)(*args); print(f, '%.3f s'%(time.perf_counter()-t))
for _ in range(3):
    t=time.perf_counter(); c=time.process_time(); out=pp.level(hm); print("level 2048^2: wall %.3f s, cpu %.3f s"%(time.perf_counter()-t, time.process_time()-c))
