"""The papers the report's sections cite (one place, so citations are consistent).

Each entry of the table below is a name line (the module attribute, ``from reportgen.papers import
SIMONYAN_2014``), then indented: authors; title; venue, year; url. :data:`PAPERS` maps the names to
:class:`~reportgen.report.Reference` objects.
"""

from .report import Reference

_TABLE = """
KRIZHEVSKY_2012
    Alex Krizhevsky, Ilya Sutskever, Geoffrey E. Hinton
    ImageNet Classification with Deep Convolutional Neural Networks
    NeurIPS, 2012
    https://papers.nips.cc/paper/2012/hash/c399862d3b9d6b76c8436e924a68c45b-Abstract.html

ZEILER_FERGUS_2014
    Matthew D. Zeiler, Rob Fergus
    Visualizing and Understanding Convolutional Networks
    ECCV, 2014
    https://arxiv.org/abs/1311.2901

DEON_2022
    Greg d'Eon, Jason d'Eon, James R. Wright, Kevin Leyton-Brown
    The Spotlight: A General Method for Discovering Systematic Errors in Deep Learning Models
    FAccT, 2022
    https://arxiv.org/abs/2107.00758

PLUMB_2023
    Gregory Plumb, Nari Johnson, Angel Alexander Cabrera, Ameet Talwalkar
    Towards a More Rigorous Science of Blindspot Discovery in Image Classification Models
    TMLR, 2023
    https://arxiv.org/abs/2207.04104

NORTHCUTT_2021
    Curtis G. Northcutt, Lu Jiang, Isaac L. Chuang
    Confident Learning: Estimating Uncertainty in Dataset Labels
    JAIR, 2021
    https://arxiv.org/abs/1911.00068

NAKANDALA_2019
    Supun Nakandala, Arun Kumar, Yannis Papakonstantinou
    Incremental and Approximate Inference for Faster Occlusion-based Deep CNN Explanations
    SIGMOD, 2019
    https://dblp.org/rec/conf/sigmod/NakandalaKP19

ABNAR_ZUIDEMA_2020
    Samira Abnar, Willem Zuidema
    Quantifying Attention Flow in Transformers
    ACL, 2020
    https://aclanthology.org/2020.acl-main.385/

CHEFER_2021
    Hila Chefer, Shir Gur, Lior Wolf
    Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers
    ICCV, 2021
    https://arxiv.org/abs/2103.15679

DOSOVITSKIY_2021
    Alexey Dosovitskiy, Lucas Beyer, Alexander Kolesnikov, Dirk Weissenborn, Xiaohua Zhai, Thomas Unterthiner, Mostafa Dehghani, Matthias Minderer, Georg Heigold, Sylvain Gelly, Jakob Uszkoreit, Neil Houlsby
    An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale
    ICLR, 2021
    https://arxiv.org/abs/2010.11929

YOSINSKI_2015
    Jason Yosinski, Jeff Clune, Anh Nguyen, Thomas Fuchs, Hod Lipson
    Understanding Neural Networks Through Deep Visualization
    ICML Deep Learning Workshop, 2015
    https://arxiv.org/abs/1506.06579

SIMONYAN_2014
    Karen Simonyan, Andrea Vedaldi, Andrew Zisserman
    Deep Inside Convolutional Networks: Visualising Image Classification Models and Saliency Maps
    ICLR Workshop, 2014
    https://arxiv.org/abs/1312.6034

SPRINGENBERG_2015
    Jost Tobias Springenberg, Alexey Dosovitskiy, Thomas Brox, Martin Riedmiller
    Striving for Simplicity: The All Convolutional Net
    ICLR Workshop, 2015
    https://arxiv.org/abs/1412.6806

GIRSHICK_2014
    Ross Girshick, Jeff Donahue, Trevor Darrell, Jitendra Malik
    Rich feature hierarchies for accurate object detection and semantic segmentation
    CVPR, 2014
    https://arxiv.org/abs/1311.2524

VAN_DER_MAATEN_2008
    Laurens van der Maaten, Geoffrey Hinton
    Visualizing Data using t-SNE
    JMLR, 2008
    https://www.jmlr.org/papers/v9/vandermaaten08a.html

VENNA_KASKI_2001
    Jarkko Venna, Samuel Kaski
    Neighborhood Preservation in Nonlinear Projection Methods: An Experimental Study
    ICANN, 2001
    https://doi.org/10.1007/3-540-44668-0_68

ROTHER_2004
    Carsten Rother, Vladimir Kolmogorov, Andrew Blake
    GrabCut: Interactive Foreground Extraction using Iterated Graph Cuts
    SIGGRAPH, 2004
    https://doi.org/10.1145/1015706.1015720

SZEGEDY_2014
    Christian Szegedy, Wojciech Zaremba, Ilya Sutskever, Joan Bruna, Dumitru Erhan, Ian Goodfellow, Rob Fergus
    Intriguing properties of neural networks
    ICLR, 2014
    https://arxiv.org/abs/1312.6199

GOODFELLOW_2015
    Ian J. Goodfellow, Jonathon Shlens, Christian Szegedy
    Explaining and Harnessing Adversarial Examples
    ICLR, 2015
    https://arxiv.org/abs/1412.6572

MADRY_2018
    Aleksander Madry, Aleksandar Makelov, Ludwig Schmidt, Dimitris Tsipras, Adrian Vladu
    Towards Deep Learning Models Resistant to Adversarial Attacks
    ICLR, 2018
    https://arxiv.org/abs/1706.06083

NGUYEN_2015
    Anh Nguyen, Jason Yosinski, Jeff Clune
    Deep Neural Networks are Easily Fooled: High Confidence Predictions for Unrecognizable Images
    CVPR, 2015
    https://arxiv.org/abs/1412.1897

MORDVINTSEV_2015
    Alexander Mordvintsev, Christopher Olah, Mike Tyka
    Inceptionism: Going Deeper into Neural Networks
    Google Research Blog, 2015
    https://research.google/blog/inceptionism-going-deeper-into-neural-networks/

KARPATHY_TSNE
    Andrej Karpathy
    t-SNE visualization of CNN codes
    web page, 2014
    https://cs.stanford.edu/people/karpathy/cnnembed/

MAHENDRAN_VEDALDI_2015
    Aravindh Mahendran, Andrea Vedaldi
    Understanding Deep Image Representations by Inverting Them
    CVPR, 2015
    https://arxiv.org/abs/1412.0035

GATYS_TEXTURE_2015
    Leon A. Gatys, Alexander S. Ecker, Matthias Bethge
    Texture Synthesis Using Convolutional Neural Networks
    NeurIPS, 2015
    https://arxiv.org/abs/1505.07376

GATYS_STYLE_2016
    Leon A. Gatys, Alexander S. Ecker, Matthias Bethge
    Image Style Transfer Using Convolutional Neural Networks
    CVPR, 2016
    https://openaccess.thecvf.com/content_cvpr_2016/html/Gatys_Image_Style_Transfer_CVPR_2016_paper.html

JOHNSON_2016
    Justin Johnson, Alexandre Alahi, Li Fei-Fei
    Perceptual Losses for Real-Time Style Transfer and Super-Resolution
    ECCV, 2016
    https://arxiv.org/abs/1603.08155

EFROS_LEUNG_1999
    Alexei A. Efros, Thomas K. Leung
    Texture Synthesis by Non-parametric Sampling
    ICCV, 1999
    https://doi.org/10.1109/ICCV.1999.790383

WEI_LEVOY_2000
    Li-Yi Wei, Marc Levoy
    Fast Texture Synthesis using Tree-structured Vector Quantization
    SIGGRAPH, 2000
    https://doi.org/10.1145/344779.345009

OLAH_2017
    Chris Olah, Alexander Mordvintsev, Ludwig Schubert
    Feature Visualization
    Distill, 2017
    https://distill.pub/2017/feature-visualization/

SELVARAJU_2017
    Ramprasaath R. Selvaraju, Michael Cogswell, Abhishek Das, Ramakrishna Vedantam, Devi Parikh, Dhruv Batra
    Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization
    ICCV, 2017
    https://arxiv.org/abs/1610.02391

CHATTOPADHAY_2018
    Aditya Chattopadhay, Anirban Sarkar, Prantik Howlader, Vineeth N Balasubramanian
    Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep Convolutional Networks
    WACV, 2018
    https://arxiv.org/abs/1710.11063

SMILKOV_2017
    Daniel Smilkov, Nikhil Thorat, Been Kim, Fernanda Viegas, Martin Wattenberg
    SmoothGrad: removing noise by adding noise
    ICML Workshop on Visualization for Deep Learning, 2017
    https://arxiv.org/abs/1706.03825

SUNDARARAJAN_2017
    Mukund Sundararajan, Ankur Taly, Qiqi Yan
    Axiomatic Attribution for Deep Networks
    ICML, 2017
    https://arxiv.org/abs/1703.01365

ADEBAYO_2018
    Julius Adebayo, Justin Gilmer, Michael Muelly, Ian Goodfellow, Moritz Hardt, Been Kim
    Sanity Checks for Saliency Maps
    NeurIPS, 2018
    https://arxiv.org/abs/1810.03292

KORNBLITH_2019
    Simon Kornblith, Mohammad Norouzi, Honglak Lee, Geoffrey Hinton
    Similarity of Neural Network Representations Revisited
    ICML, 2019
    https://arxiv.org/abs/1905.00414

SONG_2012
    Le Song, Alex Smola, Arthur Gretton, Justin Bedo, Karsten Borgwardt
    Feature Selection via Dependence Maximization
    Journal of Machine Learning Research 13, 2012
    https://jmlr.org/papers/v13/song12a.html

NGUYEN_2021
    Thao Nguyen, Maithra Raghu, Simon Kornblith
    Do Wide and Deep Networks Learn the Same Things? Uncovering How Neural Network Representations Vary with Width and Depth
    ICLR, 2021
    https://arxiv.org/abs/2010.15327

GUO_2017
    Chuan Guo, Geoff Pleiss, Yu Sun, Kilian Q. Weinberger
    On Calibration of Modern Neural Networks
    ICML, 2017
    https://arxiv.org/abs/1706.04599

NAEINI_2015
    Mahdi Pakdaman Naeini, Gregory F. Cooper, Milos Hauskrecht
    Obtaining Well Calibrated Probabilities Using Bayesian Binning
    AAAI, 2015
    https://www.ncbi.nlm.nih.gov/pmc/articles/PMC4410090/

NIXON_2019
    Jeremy Nixon, Michael W. Dusenberry, Linchuan Zhang, Ghassen Jerfel, Dustin Tran
    Measuring Calibration in Deep Learning
    CVPR Workshops, 2019
    https://arxiv.org/abs/1904.01685

WANG_SSIM_2004
    Zhou Wang, Alan C. Bovik, Hamid R. Sheikh, Eero P. Simoncelli
    Image Quality Assessment: From Error Visibility to Structural Similarity
    IEEE Transactions on Image Processing, 2004
    https://doi.org/10.1109/TIP.2003.819861

FEL_2023
    Thomas Fel, Agustin Picard, Louis Bethune, Thibaut Boissin, David Vigouroux, Julien Colin, Remi Cadene, Thomas Serre
    CRAFT: Concept Recursive Activation FacTorization for Explainability
    CVPR, 2023
    https://arxiv.org/abs/2211.10154

COLLINS_2018
    Edo Collins, Radhakrishna Achanta, Sabine Susstrunk
    Deep Feature Factorization for Concept Discovery
    ECCV, 2018
    https://arxiv.org/abs/1806.10206

LAPUSCHKIN_2019
    Sebastian Lapuschkin, Stephan Waldchen, Alexander Binder, Gregoire Montavon, Wojciech Samek, Klaus-Robert Muller
    Unmasking Clever Hans predictors and assessing what machines really learn
    Nature Communications, 2019
    https://doi.org/10.1038/s41467-019-08987-4

PRABHUSHANKAR_2020
    Mohit Prabhushankar, Gukyeong Kwon, Dogancan Temel, Ghassan AlRegib
    Contrastive Explanations in Neural Networks
    ICIP, 2020
    https://arxiv.org/abs/2008.00178

VON_LUXBURG_2007
    Ulrike von Luxburg
    A Tutorial on Spectral Clustering
    Statistics and Computing, 2007
    https://arxiv.org/abs/0711.0189

PETSIUK_2018
    Vitali Petsiuk, Abir Das, Kate Saenko
    RISE: Randomized Input Sampling for Explanation of Black-box Models
    BMVC, 2018
    https://arxiv.org/abs/1806.07421

BHATT_2020
    Umang Bhatt, Adrian Weller, Jose M. F. Moura
    Evaluating and Aggregating Feature-based Model Explanations
    IJCAI, 2020
    https://arxiv.org/abs/2005.00631

RONG_2022
    Yao Rong, Tobias Leemann, Vadim Borisov, Gjergji Kasneci, Enkelejda Kasneci
    A Consistent and Efficient Evaluation Strategy for Attribution Methods
    ICML, 2022
    https://arxiv.org/abs/2202.00449

HENDRYCKS_DIETTERICH_2019
    Dan Hendrycks, Thomas Dietterich
    Benchmarking Neural Network Robustness to Common Corruptions and Perturbations
    ICLR, 2019
    https://arxiv.org/abs/1903.12261

SIXT_2020
    Leon Sixt, Maximilian Granz, Tim Landgraf
    When Explanations Lie: Why Many Modified BP Attributions Fail
    ICML, 2020
    https://arxiv.org/abs/1912.09818
"""


def _parse(table: str) -> dict[str, Reference]:
    papers: dict[str, Reference] = {}
    for record in table.strip().split("\n\n"):
        name, authors, title, venue_year, url = (line.strip() for line in record.splitlines())
        venue, year = venue_year.rsplit(",", 1)
        papers[name] = Reference(authors, title, venue, int(year), url)
    return papers


PAPERS = _parse(_TABLE)
globals().update(PAPERS)
__all__ = ["PAPERS", *PAPERS]


def __getattr__(name: str) -> Reference:
    """Only reached for a name the table does not define (those are module globals): tells type checkers that
    ``from reportgen.papers import SOME_2019`` is a :class:`Reference`."""
    raise AttributeError(f"module {__name__!r} has no attribute {name!r} (not in the references table)")
